#!/bin/sh
# `make install DESTDIR=... PREFIX=/usr` puts exactly the expected files in
# place, the installed unit runs the installed binary, the installed
# config and rules load, and a second install keeps the operator's
# edited config. A default install (PREFIX=/usr/local) points the unit at
# /usr/local/bin. usage: check-install.sh [BUILD_DIR]
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check-install: $*" >&2; exit 1; }
# A plain make, whatever make (and its jobserver) started this script.
mk() { env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -s --no-print-directory BUILD="$build" "$@"; }

root=$tmp/root
mk install DESTDIR="$root" PREFIX=/usr >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "make install failed"; }

# The file list: the binary, the unit, the docs, the config and every rule
# file of rules/, and nothing else.
{
    printf '%s\n' /etc/churnd /etc/churnd/churnd.yaml /etc/churnd/rules \
        /usr/bin/churnd /usr/lib/systemd/system/churnd.service \
        /usr/share/doc/churnd /usr/share/doc/churnd/README.md \
        /usr/share/doc/churnd/docs
    for f in rules/*.yaml; do echo "/etc/churnd/rules/${f#rules/}"; done
    for f in docs/*.md; do echo "/usr/share/doc/churnd/docs/${f#docs/}"; done
    for d in /etc /usr /usr/bin /usr/lib /usr/lib/systemd /usr/lib/systemd/system \
        /usr/share /usr/share/doc; do echo "$d"; done
} | sort >"$tmp/want"
(cd "$root" && find . -mindepth 1 | sed 's|^\.||' | sort) >"$tmp/got"
if ! cmp -s "$tmp/want" "$tmp/got"; then
    diff "$tmp/want" "$tmp/got" >&2 || true
    fail "installed files differ from the expected list (- expected, + installed)"
fi

[ -x "$root/usr/bin/churnd" ] || fail "/usr/bin/churnd is not executable"
"$root/usr/bin/churnd" version >/dev/null || fail "the installed churnd does not run"
unit=$root/usr/lib/systemd/system/churnd.service
grep -qx 'ExecStart=/usr/bin/churnd run -c /etc/churnd/churnd.yaml' "$unit" ||
    fail "the installed unit does not run /usr/bin/churnd: $(grep '^ExecStart=' "$unit")"
grep -qx 'Documentation=file:/usr/share/doc/churnd/README.md' "$unit" ||
    fail "the installed unit's Documentation= is not the installed README"
# Apart from those two lines the unit is the template, byte for byte.
grep -v '^ExecStart=\|^Documentation=' systemd/churnd.service >"$tmp/a"
grep -v '^ExecStart=\|^Documentation=' "$unit" >"$tmp/b"
cmp -s "$tmp/a" "$tmp/b" || fail "the installed unit differs from systemd/churnd.service"
cmp -s systemd/churnd.yaml "$root/etc/churnd/churnd.yaml" || fail "churnd.yaml differs"
for f in "$root"/usr/lib/systemd/system/churnd.service "$root"/etc/churnd/churnd.yaml; do
    [ "$(stat -c %a "$f")" = 644 ] || fail "$f has mode $(stat -c %a "$f"), not 644"
done

# The installed config names the installed rules and the unit's
# StateDirectory, the only writable place under ProtectSystem=strict.
grep -q '^  dir: /etc/churnd/rules$' "$root/etc/churnd/churnd.yaml" ||
    fail "churnd.yaml's rules.dir is not /etc/churnd/rules"
grep -q '^  dir: /var/lib/churnd/' "$root/etc/churnd/churnd.yaml" ||
    fail "churnd.yaml's state.dir is not under /var/lib/churnd (StateDirectory=churnd)"
"$root/usr/bin/churnd" check "$root/etc/churnd/rules" >"$tmp/check.log" 2>&1 ||
    { cat "$tmp/check.log" >&2; fail "the installed rules do not load"; }

# A second install keeps what the operator changed in /etc.
echo "# edited by the operator" >>"$root/etc/churnd/churnd.yaml"
rm "$root/etc/churnd/rules/detractor.yaml"
mk install DESTDIR="$root" PREFIX=/usr >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "a second make install failed"; }
grep -q '^# edited by the operator$' "$root/etc/churnd/churnd.yaml" ||
    fail "a second install overwrote /etc/churnd/churnd.yaml"
[ ! -e "$root/etc/churnd/rules/detractor.yaml" ] ||
    fail "a second install put back a rule the operator removed"

# The default PREFIX.
mk install DESTDIR="$tmp/default" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "make install (default PREFIX) failed"; }
[ -x "$tmp/default/usr/local/bin/churnd" ] || fail "no /usr/local/bin/churnd by default"
grep -qx 'ExecStart=/usr/local/bin/churnd run -c /etc/churnd/churnd.yaml' \
    "$tmp/default/usr/local/lib/systemd/system/churnd.service" ||
    fail "the default install's unit does not run /usr/local/bin/churnd"

# And uninstall takes back what install put under PREFIX, not /etc.
mk uninstall DESTDIR="$root" PREFIX=/usr >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "make uninstall failed"; }
[ ! -e "$root/usr/bin/churnd" ] && [ ! -e "$unit" ] && [ ! -e "$root/usr/share/doc/churnd" ] ||
    fail "make uninstall left files under /usr"
[ -e "$root/etc/churnd/churnd.yaml" ] || fail "make uninstall removed the config"
echo "check-install: make install DESTDIR PREFIX=/usr: $(wc -l <"$tmp/want") paths, unit runs /usr/bin/churnd"
