#!/bin/sh
# churnd inside an approximation of systemd/churnd.service's sandbox, for
# scripts/check-sandbox.sh: the integration tests start this script as
# CHURND_BIN (`sandbox-churnd.sh run -c CFG`). Every step execs, so churnd
# keeps this pid and the tests' signals and WATCHDOG_PID reach it.
#
#   unshare -m           a private mount namespace where, as under
#                        ProtectSystem=strict, every file system is
#                        read-only except /proc, /sys, /dev and the test's
#                        directory (the config's; the state lives there, as
#                        it lives in StateDirectory= under systemd) and the
#                        trace's; /proc is
#                        remounted hidepid=invisible,subset=pid
#                        (ProtectProc=invisible, ProcSubset=pid)
#   strace               when SANDBOX_TRACE is set: every system call, for
#                        the SystemCallFilter= check (-D keeps the pid)
#   setpriv              no capabilities at all (CapabilityBoundingSet=)
#   tests/tools/sandbox  MemoryDenyWriteExecute, RestrictAddressFamilies,
#                        RestrictNamespaces, SystemCallArchitectures,
#                        NoNewPrivileges
# Not reproduced: the dynamic user, PrivateTmp, PrivateDevices, and the
# system call allow list itself (checked from the trace instead). Without
# capabilities, sd_notify's SO_SNDBUFFORCE is refused (EPERM) and it
# carries on with the plain SO_SNDBUF, exactly as under systemd.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${SANDBOX_CHURND:-$here/../build/churnd}
tool=${SANDBOX_TOOL:-$here/../build/tests/sandbox}
# The unit runs `churnd run` only; another command (a test preparing a
# state with `churnd replay`) runs as it is.
if [ "${1:-}" != run ]; then
    exec "$bin" "$@"
fi
cfg=
prev=
for a in "$@"; do
    [ "$prev" = -c ] && cfg=$a
    prev=$a
done
if [ -z "$cfg" ]; then
    echo "sandbox-churnd: no -c CONFIG among the arguments" >&2
    exit 127
fi
dir=$(cd "$(dirname "$cfg")" && pwd)
export SANDBOX_DIR="$dir" SANDBOX_BIN="$bin" SANDBOX_TOOLBIN="$tool"
exec unshare -m --propagation private sh -eu -c '
    awk "{ print \$2 }" /proc/self/mounts | sort -u | while read -r m; do
        case $m in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
        mount -o remount,bind,ro "$m"
    done
    for w in "$SANDBOX_DIR" ${SANDBOX_TRACE:+"$(dirname "$SANDBOX_TRACE")"}; do
        mount --bind "$w" "$w"
        mount -o remount,bind,rw "$w"
    done
    mount -t proc -o hidepid=invisible,subset=pid proc /proc
    set -- setpriv --bounding-set=-all --inh-caps=-all --ambient-caps=-all \
        "$SANDBOX_TOOLBIN" "$SANDBOX_BIN" "$@"
    if [ -n "${SANDBOX_TRACE:-}" ]; then
        exec strace -D -f -ff -qq -s 80 -o "$SANDBOX_TRACE" "$@"
    fi
    exec "$@"
' sandbox-churnd "$@"
