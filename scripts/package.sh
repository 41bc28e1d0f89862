#!/usr/bin/env bash
# Builds the Debian package radraft_<version>_<arch>.deb in a build folder of its own
# (default build-deb), configured for the installed layout: the binary in /usr/bin looks
# for its model in /usr/share/radraft/models. The compiler and linker flags are Debian's
# (dpkg-buildflags, with every hardening feature). Prints the package's path last.
#   bash scripts/package.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-deb}

for tool in dpkg-buildflags dpkg-shlibdeps; do
    command -v $tool >/dev/null || {
        echo "package: $tool is missing (Debian's dpkg-dev: bash scripts/setup.sh --test)" >&2
        exit 1
    }
done
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
# CMake reads no CPPFLAGS: the preprocessor's flags (_FORTIFY_SOURCE) join the compilers'.
cppflags=$(dpkg-buildflags --get CPPFLAGS)
CFLAGS="$(dpkg-buildflags --get CFLAGS) $cppflags" \
CXXFLAGS="$(dpkg-buildflags --get CXXFLAGS) $cppflags" \
LDFLAGS=$(dpkg-buildflags --get LDFLAGS) \
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=None -DCMAKE_INSTALL_PREFIX=/usr \
    -DRADRAFT_MODELS_DIR=/usr/share/radraft/models -DRADRAFT_BUILD_TESTS=OFF >/dev/null
jobs=$(nproc 2>/dev/null || echo 2)
cmake --build "$dir" -j "$jobs" --target package
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$dir/CMakeCache.txt")
deb="$dir/radraft_${version}_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || { echo "package: $deb was not built" >&2; exit 1; }
echo "$deb"
