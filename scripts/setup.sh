# Sourced by scripts/demo.sh and scripts/test.sh: installs what a fresh machine lacks.

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

# CMakeLists.txt needs CMake 3.25 (Debian 12 has 3.25.1; Ubuntu 22.04's 3.22 is too old).
cmake_recent() {
    command -v cmake >/dev/null 2>&1 || return 1
    local version
    version=$(cmake --version | head -n 1 | awk '{print $3}')
    [ "$(printf '%s\n3.25\n' "$version" | sort -V | head -n 1)" = 3.25 ]
}

ensure_cmake() {
    cmake_recent && return 0
    command -v cmake >/dev/null 2>&1 || need cmake cmake || true
    cmake_recent && return 0
    echo "== installing CMake >= 3.25 from PyPI (none here, or the distribution's is older)"
    python3 -m pip install --quiet 'cmake>=3.25' 2>/dev/null ||
        python3 -m pip install --quiet --user 'cmake>=3.25' ||
        { echo "CMake 3.25 or newer is needed, and pip could not install it: install it first" >&2; exit 1; }
    export PATH="$HOME/.local/bin:$PATH"
    hash -r
    cmake_recent || { echo "CMake 3.25 or newer is needed: $(command -v cmake || echo none)" >&2; exit 1; }
}

# cargo fmt and cargo clippy (a minimal rustup profile has neither).
ensure_rust_components() {
    local component
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            echo "== installing the Rust component $component"
            rustup component add "$component"
        fi
    done
}
