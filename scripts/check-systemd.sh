#!/bin/sh
# The unit as `make install` writes it passes `systemd-analyze verify` and
# scores an overall exposure of at most 2.0 in `systemd-analyze security`
# (SPEC section 8). Neither needs systemd running as PID 1: both read the
# unit file offline. usage: check-systemd.sh [BUILD_DIR]
#
# verify checks that every Exec*= command exists and is executable on this
# machine, so it is run on a copy of the installed unit whose ExecStart=
# names the installed binary inside DESTDIR (the only change; the check
# fails if the line is not the one make install wrote). Any message from
# verify counts as a failure, warnings included: an unknown or misspelt
# setting is only a warning to systemd, and would silently weaken the
# sandbox.
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
max_exposure=${CHURND_MAX_EXPOSURE:-2.0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check-systemd: $*" >&2; exit 1; }
command -v systemd-analyze >/dev/null ||
    fail "systemd-analyze not found (Debian package systemd, see scripts/debian-packages)"

root=$tmp/root
env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s --no-print-directory BUILD="$build" \
    install DESTDIR="$root" PREFIX=/usr >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "make install failed"; }
unit=$root/usr/lib/systemd/system/churnd.service

mkdir "$tmp/verify"
sed "s|^ExecStart=/usr/bin/churnd |ExecStart=$root/usr/bin/churnd |" "$unit" \
    >"$tmp/verify/churnd.service"
grep -q "^ExecStart=$root/usr/bin/churnd run " "$tmp/verify/churnd.service" ||
    fail "the installed unit's ExecStart= is not /usr/bin/churnd"
# --man=no: the Documentation= link is to a file, and man pages are not
# what this checks; --generators=no: no generator output exists here.
if ! systemd-analyze verify --man=no --generators=no "$tmp/verify/churnd.service" \
        >"$tmp/verify.log" 2>&1 || [ -s "$tmp/verify.log" ]; then
    cat "$tmp/verify.log" >&2
    fail "systemd-analyze verify rejected the unit (or warned about it)"
fi
echo "check-systemd: systemd-analyze verify: ok"

systemd-analyze security --offline=yes "$unit" >"$tmp/security.log" 2>&1 ||
    { cat "$tmp/security.log" >&2; fail "systemd-analyze security failed"; }
line=$(grep 'Overall exposure level for churnd.service:' "$tmp/security.log" || true)
[ -n "$line" ] || { cat "$tmp/security.log" >&2; fail "no overall exposure level in the output"; }
score=$(echo "$line" | sed -E 's/.*churnd\.service: ([0-9]+\.[0-9]+).*/\1/')
echo "check-systemd: $line"
if ! awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s + 0 <= m + 0) }'; then
    grep '✗' "$tmp/security.log" >&2 || true
    fail "overall exposure $score is above $max_exposure"
fi
