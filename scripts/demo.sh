#!/usr/bin/env bash
# The demo: builds the C++ example with CMake and runs it (it starts the Cloud API emulator on a
# free loopback port itself: sends, receives simulated inbound messages, echoes, closes); then
# the C example against the shared library, end to end (send, react, close).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/setup.sh
. scripts/setup.sh
need cc gcc
need c++ g++
ensure_cmake
echo "== C++ example (cpp-example/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build -j2 --target cpp-example >/dev/null
build/cpp-example/cpp-example

echo
echo "== C example (examples/c/)"

cargo build --quiet --lib --bin wa-emulator
out=target/debug
cc -std=c11 -Wall -Wextra -Werror -Iinclude examples/c/demo.c -o "$out/c-demo" \
    -L"$out" -lwhatsapp_connector -Wl,-rpath,"$PWD/$out"

coproc EMULATOR { exec "$out/wa-emulator" --listen 127.0.0.1:0 --exit-on-stdin-eof; }
trap 'kill "$EMULATOR_PID" 2>/dev/null || true' EXIT
read -r first_line <&"${EMULATOR[0]}"
url=${first_line##* }
echo "emulator: $url"
"$out/c-demo" "$url"
