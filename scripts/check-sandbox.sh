#!/bin/sh
# churnd works inside systemd/churnd.service's sandbox, as far as it can be
# rebuilt without systemd as PID 1 (scripts/sandbox-churnd.sh: read-only
# file systems, /proc subset=pid, no capabilities, W^X memory, IP and unix
# sockets only, no namespaces): test_notify (start-up, READY=1, watchdog,
# SIGHUP reload, SIGTERM drain, exit 0) must pass in it. Meanwhile every
# system call churnd makes is traced, and each must be allowed by the
# unit's SystemCallFilter= lines, expanded with systemd's own group lists
# (systemd-analyze syscall-filter), minus the groups other settings deny
# (ProtectClock: @clock, ProtectKernelModules: @module, PrivateDevices:
# @raw-io). The unit answers EPERM outside the list rather than killing, so
# without this check a refused call would only show as a strange error.
# usage: check-sandbox.sh [BUILD_DIR]; needs root (mount namespaces),
# strace, and Linux 6.3 or later (PR_SET_MDWE).
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check-sandbox: $*" >&2; exit 1; }
for t in strace unshare setpriv systemd-analyze; do
    command -v "$t" >/dev/null || fail "$t not found (scripts/debian-packages)"
done
test_bin=$build/tests/integration/test_notify
for f in "$build/churnd" "$build/tests/sandbox" "$test_bin"; do
    [ -x "$f" ] || fail "$f is not built"
done

mkdir "$tmp/trace"
if ! env CHURND_BIN="$PWD/scripts/sandbox-churnd.sh" SANDBOX_CHURND="$PWD/$build/churnd" \
        SANDBOX_TOOL="$PWD/$build/tests/sandbox" SANDBOX_TRACE="$tmp/trace/churnd" \
        "$test_bin" >"$tmp/test.log" 2>&1; then
    cat "$tmp/test.log" >&2
    fail "test_notify fails with churnd in the sandbox"
fi
ls "$tmp/trace" | grep -q . || fail "no trace was written"

# The allowed names: SystemCallFilter= lines in order, as systemd reads
# them (the first one without ~ makes it an allow list; ~ lines remove).
systemd-analyze syscall-filter >"$tmp/groups" 2>/dev/null ||
    fail "systemd-analyze syscall-filter failed"
{
    sed -n 's/^SystemCallFilter=//p' systemd/churnd.service
    echo "~@clock @module @raw-io"
} | awk -v groups="$tmp/groups" '
    BEGIN {
        while ((getline l < groups) > 0) {
            if (l ~ /^@/) { g = l; continue }
            if (l ~ /^ +#/ || l !~ /^ +[@a-z0-9_]/) continue
            sub(/^ +/, "", l)
            members[g] = members[g] " " l
        }
    }
    function expand(name, into,    n, i, parts) {
        if (name !~ /^@/) { into[name] = 1; return }
        if (seen[name]++) return
        n = split(members[name], parts, " ")
        for (i = 1; i <= n; i++) expand(parts[i], into)
    }
    {
        deny = sub(/^~/, "")
        n = split($0, words, " ")
        for (i = 1; i <= n; i++) {
            delete seen; delete names
            expand(words[i], names)
            for (s in names) if (deny) delete allow[s]; else allow[s] = 1
        }
    }
    END { for (s in allow) print s }
' | sort >"$tmp/allowed"
[ "$(wc -l <"$tmp/allowed")" -gt 100 ] || fail "could not expand SystemCallFilter= ($(wc -l <"$tmp/allowed") names)"

# The calls churnd made: in the trace of the first process only those
# after it exec'd churnd (before that it was setpriv and the sandbox tool).
for f in "$tmp"/trace/churnd.*; do
    if grep -q '^execve(' "$f"; then
        awk '/^execve\(/ { n = NR } { l[NR] = $0 } END { for (i = n; i <= NR; i++) print l[i] }' "$f"
    else
        cat "$f"
    fi
done >"$tmp/calls"
sed -n 's/^\([a-z0-9_]*\)(.*/\1/p' "$tmp/calls" | sort -u >"$tmp/made"
comm -23 "$tmp/made" "$tmp/allowed" >"$tmp/outside"
if [ -s "$tmp/outside" ]; then
    echo "check-sandbox: churnd made system calls outside the unit's SystemCallFilter=:" >&2
    for s in $(cat "$tmp/outside"); do grep -m 3 "^$s(" "$tmp/calls" >&2; done
    exit 1
fi
# MemoryDenyWriteExecute, read from the trace as well as imposed.
if grep -E '^(mmap|mprotect|pkey_mprotect)\(' "$tmp/calls" |
        grep -E 'PROT_WRITE\|PROT_EXEC|^(pkey_)?mprotect\(.*PROT_EXEC' >"$tmp/wx"; then
    cat "$tmp/wx" >&2
    fail "churnd asked for writable and executable memory"
fi
refused=$(grep -E '= -1 (EPERM|EAFNOSUPPORT|ENOSYS)' "$tmp/calls" |
    sed -E 's/^([a-z0-9_]+\((AF_[A-Z0-9]+)?).*= -1 ([A-Z]+).*/\1 \3/' | sort | uniq -c |
    awk '{ printf "%s%s) %s x%s", sep, $2, $3, $1; sep = ", " }')
echo "check-sandbox: test_notify passes in the sandbox; $(wc -l <"$tmp/made") distinct system calls, all within SystemCallFilter="
[ -z "$refused" ] || echo "check-sandbox: refused and survived: $refused"
