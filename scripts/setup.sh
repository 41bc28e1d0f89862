#!/usr/bin/env bash
# Installs the Debian packages radraft needs (only those missing) and builds it.
#   bash scripts/setup.sh          build dependencies + DCMTK tools, then build into build/
#   bash scripts/setup.sh --test   also what the tests drive (dicom3tools, PixelMed, PyTorch, Orthanc,
#                                  Chromium with playwright-core for the web page's test, clang
#                                  with libFuzzer for scripts/fuzz.sh, lintian and systemd for
#                                  the Debian package's test)
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=0
[ "${1:-}" = "--test" ] && want_tests=1

pkgs=(build-essential cmake pkg-config git libdcmtk-dev dcmtk libpng-dev libopenblas-dev
      libcjson-dev libsqlite3-dev sqlite3 libopenjp2-7-dev libsodium-dev libmicrohttpd-dev zlib1g-dev
      libcurl4-openssl-dev libpq-dev
      python3)
if [ "$want_tests" = 1 ]; then
    pkgs+=(postgresql-15 orthanc-postgresql dicom3tools strace python3-numpy python3-torch orthanc orthanc-dicomweb curl openssl clang-format chromium
           libpixelmed-java default-jre-headless)
    # The fuzz targets (scripts/fuzz.sh): clang, and its runtime libraries (libFuzzer and the
    # sanitizers), which clang only recommends.
    pkgs+=(clang libclang-rt-dev)
    # The Debian package's test (test_package): lintian, systemd-analyze (systemd, which
    # needs no running systemd for it), man-db for man --warnings, and dpkg-dev (also a
    # dependency of build-essential) for dpkg-buildflags and CPack's dpkg-shlibdeps.
    pkgs+=(lintian systemd man-db dpkg-dev)
    # Node.js may come from elsewhere (nodesource's nodejs bundles npm); Debian's only if none.
    if ! command -v node >/dev/null; then
        pkgs+=(nodejs)
    fi
    if ! command -v npm >/dev/null; then
        pkgs+=(npm)
    fi
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    if [ "$(id -u)" != 0 ]; then
        echo "setup: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Orthanc's package starts a system service; the tests start their own instances.
    if printf '%s\n' "${missing[@]}" | grep -qx orthanc; then
        (service orthanc stop || systemctl stop orthanc) >/dev/null 2>&1 || true
    fi
    # So does PostgreSQL's (its cluster "main"); the tests run their own servers.
    if printf '%s\n' "${missing[@]}" | grep -qx postgresql-15; then
        (service postgresql stop || systemctl stop postgresql) >/dev/null 2>&1 || true
    fi
fi

# playwright-core drives the system's Chromium (it downloads no browser); it is pinned by
# tests/browser/package-lock.json and lives in tests/browser/node_modules, which git ignores
# (as tests/fhir/node_modules).
if [ "$want_tests" = 1 ]; then
    (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    # The FHIR Bundles' validator (HL7's R4 StructureDefinitions through @medplum/core),
    # pinned by tests/fhir/package-lock.json.
    (cd tests/fhir && npm ci --no-audit --no-fund --loglevel=error)
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
