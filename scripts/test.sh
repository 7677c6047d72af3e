#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and integration tests (the C API against the
# emulator, the C demo as a real C program, under valgrind too), header freshness.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs a Debian package when a tool is missing (CI machines start without some of them).
need() {
    local tool=$1 package=$2
    command -v "$tool" >/dev/null 2>&1 && return 0
    echo "== installing $package (for $tool)"
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
    fi
}
need cc gcc
need c++ g++
need nm binutils
need valgrind valgrind

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy (all targets, benches included: they are run by scripts/bench.sh)"
cargo clippy --all-targets -- -D warnings
echo "== cargo build (the C tests link target/debug/libwhatsapp_connector.so)"
cargo build --lib --bins
echo "== cargo test"
cargo test --lib --bins --tests
