#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and integration tests (the C API against the
# emulator, the C demo as a real C program, under valgrind too), header freshness; then the
# CMake package: the C++ layer's tests, the C++ example (shared and static), header hygiene,
# find_package from an installed tree, valgrind, and an ASan/UBSan build.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/setup.sh
. scripts/setup.sh
need cc gcc
need c++ g++
need nm binutils
need valgrind valgrind
ensure_cmake
ensure_rust_components

# A clone is built once: incremental state would only take disk (0.8 GB), never time.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
echo "== disk free before the build: $(df -h --output=avail . | tail -1 | tr -d ' ')"

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy (all targets, benches included: they are run by scripts/bench.sh)"
cargo clippy --all-targets -- -D warnings
echo "== cargo build (the C tests link target/debug/libwhatsapp_connector.so)"
cargo build --lib --bins
echo "== cargo test"
cargo test --lib --bins --tests

# The CMake package. Its cargo builds go to build/cargo (never contending for ./target).
echo "== CMake build (C++ layer, example, tests)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build -j2
echo "== ctest (C++ tests, example, hygiene, find_package, valgrind)"
(cd build && ctest --output-on-failure -LE slow)
echo "== ctest under AddressSanitizer + UBSan"
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DWA_SANITIZE=ON -DWA_CARGO_TARGET_DIR="$PWD/build/cargo" >/dev/null
cmake --build build/asan -j2
(cd build/asan && ctest --output-on-failure -L cpp -E find_package)
echo "== disk used by this run's builds: $(du -sh target build 2>/dev/null | awk '{print $2 " " $1}' | paste -sd ' ')"
