#!/usr/bin/env bash
# Install the Debian packages the tests need, when missing: as root through apt, or with sudo.
# Where neither works, stop with one line saying what to install (scripts/test.sh runs nothing then).
set -euo pipefail

# The one list: "package:command it provides". Add a line when a test needs another program.
TEST_PACKAGES=(
    "chromium:chromium"         # the browser test (Playwright drives /usr/bin/chromium)
    "redis-server:redis-server" # shared-state tests start their own redis-server
    "ffmpeg:ffmpeg"             # tests that make audio files in other formats
)

me="install_test_deps.sh"
need=()
for entry in "${TEST_PACKAGES[@]}"; do
    command -v "${entry#*:}" >/dev/null 2>&1 || need+=("${entry%%:*}")
done
[ ${#need[@]} -eq 0 ] && exit 0

what="the tests need the Debian packages: ${need[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "$me: $what; there is no apt-get here: install them (e.g. 'apt-get install ${need[*]}'), then run again" >&2
    exit 1
fi
if [ "$(id -u)" = 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
    as_root=(sudo)
else
    echo "$me: $what; not root and no sudo: run 'sudo apt-get install ${need[*]}' as an administrator, then run again" >&2
    exit 1
fi

echo "$me: installing ${need[*]} with apt-get" >&2
if ! out=$("${as_root[@]}" apt-get update -qq 2>&1); then
    echo "$me: 'apt-get update' failed: ${out##*$'\n'}" >&2
    exit 1
fi
if ! out=$("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${need[@]}" 2>&1); then
    echo "$me: 'apt-get install ${need[*]}' failed: ${out##*$'\n'}" >&2
    exit 1
fi
for entry in "${TEST_PACKAGES[@]}"; do
    if ! command -v "${entry#*:}" >/dev/null 2>&1; then
        echo "$me: installed ${entry%%:*} but '${entry#*:}' is still not on PATH" >&2
        exit 1
    fi
done
