#!/bin/sh
# make demo: start churnd on its embedded broker, feed the bundled sample
# stream with kcat, wait until churnd has committed every event, print each
# published alert as one line (and the dead letters), show one client's state
# and the churn report, then stop churnd with SIGTERM and check it drained
# cleanly.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
churnd="$BUILD/churnd"
kt="$BUILD/tests/kt"
data=tests/data/demo
work=$(mktemp -d "${TMPDIR:-/tmp}/churnd-demo.XXXXXX")
pid=""
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "== starting churnd on its embedded broker (log: churnd's stderr below is kept in $work/churnd.log)"
# DEMO_WRAP runs churnd under a tool, e.g. DEMO_WRAP="valgrind
# --leak-check=full --error-exitcode=9" (the demo then fails on any report).
${DEMO_WRAP:-} "$churnd" run --embedded-broker --set "state.dir=$work/state" \
    --set rules.dir=rules --set batch.max_wait=5ms --set time.idle_timeout=1s \
    >"$work/out" 2>"$work/churnd.log" &
pid=$!
bs=""
i=0
while [ -z "$bs" ]; do
    bs=$(sed -n 's/^bootstrap=//p' "$work/out" 2>/dev/null | head -n 1)
    i=$((i + 1))
    if [ $i -gt 1200 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "churnd did not start:" >&2
        cat "$work/churnd.log" >&2
        exit 1
    fi
    [ -n "$bs" ] || sleep 0.05
done
echo "   broker at $bs"

# Key each event by its client id (the partitioning churnd expects).
tab=$(printf '\t')
keyed() {
    sed -E "s/^(.*\"client_id\" *: *\"([^\"]+)\".*)\$/\\2${tab}\\1/; t; s/^/${tab}/" "$1"
}
echo "== producing $(wc -l <"$data/crm.jsonl") CRM and $(wc -l <"$data/helpdesk.jsonl") helpdesk events with kcat"
keyed "$data/crm.jsonl" | kcat -P -b "$bs" -t crm.events -K "$tab"
keyed "$data/helpdesk.jsonl" | kcat -P -b "$bs" -t helpdesk.events -K "$tab"

echo "== waiting until churnd has committed every event"
"$kt" wait-caught-up -b "$bs" -g churnd -t crm.events,helpdesk.events -T 60
# Events wait in the reorder buffer until the watermark passes them. The
# sample stream is from March 2026: once both topics have been quiet for
# time.idle_timeout (1s here) the watermark follows the wall clock, every
# held event is applied in time order and the silences since then fire as
# timers. churnd logs "settled" when nothing is left to do.
echo "== waiting until churnd has applied every event and fired every due timer"
i=0
until grep -q 'msg=settled' "$work/churnd.log"; do
    i=$((i + 1))
    if [ $i -gt 600 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "churnd did not settle within 60 s:" >&2
        cat "$work/churnd.log" >&2
        exit 1
    fi
    sleep 0.1
done

echo "== alerts published on churn.alerts"
"$kt" alerts -b "$bs" -t churn.alerts -T 30

echo "== dead letters on churn.deadletter (original bytes; reason in headers)"
kcat -C -b "$bs" -t churn.deadletter -e -q -o beginning \
    -f '   %h\n     value: %s\n'

# Both read the state directory as a RocksDB secondary: safe while churnd runs.
echo "== churnd state WAYNE-007: why its alerts fired (read beside the running daemon)"
"$churnd" state --state "$work/state" -r rules WAYNE-007
echo "== churnd report: the churn economics of March to December 2026, at a 25% margin"
"$churnd" report --state "$work/state" --from 2026-03-01 --to 2026-12-01 --margin 25%

echo "== stopping churnd (SIGTERM: finish the batch, flush, commit, leave the group)"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
grep -E 'msg=(stopped|drained)' "$work/churnd.log" | sed 's/^/   /' || true
if [ "$rc" -ne 0 ]; then
    echo "churnd exited with $rc" >&2
    cat "$work/churnd.log" >&2
    exit 1
fi
echo "== demo done: churnd exited 0"
