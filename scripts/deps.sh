#!/bin/sh
# Install the Debian packages listed in scripts/debian-packages when any is
# missing. As root it runs apt-get itself; otherwise it prints the exact
# command to run and fails, so `make demo` / `make check` never half-build.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
pkgs=$(grep -v '^#' "$here/debian-packages" | grep -v '^$')
missing=""
for p in $pkgs; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$st" in
        *"install ok installed"*) ;;
        *) missing="$missing $p" ;;
    esac
done
[ -z "$missing" ] && exit 0
line="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "churnd: missing Debian packages:$missing" >&2
    echo "churnd: run as root:  apt-get update && $line" >&2
    exit 1
fi
echo "churnd: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >&2
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >&2
