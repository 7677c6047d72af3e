#!/usr/bin/env bash
# The demo: starts the Cloud API emulator on a free loopback port, builds the C example against
# the shared library, and runs it end to end (send, react, close).
set -euo pipefail
cd "$(dirname "$0")/.."

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
