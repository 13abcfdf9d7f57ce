#!/bin/sh
# The rule engine and the parsers are pure (STYLE.md rule 1): they must not
# include libuv, librdkafka or RocksDB, nor read a clock. This check fails
# when one of them does. usage: check-core.sh [FILE...]
set -u
cd "$(dirname "$0")/.."
files=${*:-$(ls daemon/common.c daemon/timeutil.c daemon/event.c daemon/expr.c daemon/watermark.c daemon/processor.c \
    daemon/rules_load.c daemon/features.c daemon/engine.c daemon/cstate.c \
    daemon/alert.c daemon/ledger.c daemon/report.c daemon/prom.c 2>/dev/null)}
bad=0
for f in $files; do
    [ -f "$f" ] || continue
    if grep -nE '#include *[<"](uv\.h|librdkafka/|rocksdb/|sys/time\.h)|\b(clock_gettime|gettimeofday|time\(NULL\)|time\(0\)|uv_now|uv_hrtime)\b' "$f"; then
        echo "check-core: $f is part of the pure core and must not use the above" >&2
        bad=1
    fi
done
[ "$bad" -eq 0 ] && echo "check-core: pure core is clean ($(echo $files | wc -w) files)"
exit $bad
