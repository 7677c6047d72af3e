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
echo "== C++ example (cpp-example/; the first build compiles the library: a few minutes)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build -j2 --target cpp-example >/dev/null
build/cpp-example/cpp-example

echo
echo "== C example (examples/c/)"

# The library and emulator CMake just built (a second cargo build into ./target would compile
# everything again: minutes on a fresh machine).
cache() { sed -n "s/^$1:[A-Z]*=//p" build/CMakeCache.txt; }
profile=$(cache WA_CARGO_PROFILE)
out="$(cache WA_CARGO_TARGET_DIR)/${profile:-release}"
case $out in /*) ;; *) out="$PWD/$out" ;; esac
cc -std=c11 -Wall -Wextra -Werror -Iinclude examples/c/demo.c -o "$out/c-demo" \
    -L"$out" -lwhatsapp_connector -Wl,-rpath,"$out"

coproc EMULATOR { exec "$out/wa-emulator" --listen 127.0.0.1:0 --exit-on-stdin-eof; }
trap 'kill "$EMULATOR_PID" 2>/dev/null || true' EXIT
read -r first_line <&"${EMULATOR[0]}"
url=${first_line##* }
echo "emulator: $url"
"$out/c-demo" "$url"
