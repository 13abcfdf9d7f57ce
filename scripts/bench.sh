#!/bin/sh
# shellcheck disable=SC2317 # row_* functions are called by name, fail after traps
# churnd's benchmark table: each row measures churnd against a baseline
# measured in the same run of this script, on the same machine and data,
# so the ratio means something even on a busy or slow machine.
#
# usage: scripts/bench.sh BUILD_DIR [ROW...]      (make bench runs every row)
#
# Rows (one function row_<name> each; add new ones to ALL_ROWS):
#   replay   churnd replay -r rules over the generated stream, fresh state,
#            vs a bare cJSON parse of the same file (tests/tools/parse_only);
#            target: ratio >= 0.4
#   daemon   churnd run over a pre-filled broker (BENCH_EVENTS gen events,
#            split into crm.events and helpdesk.events as gen
#            --out-crm/--out-helpdesk does), from start to "settled" (every
#            event applied, due timers fired), vs two concurrent
#            `kcat -C -e -o beginning` reading the same topics; the row
#            daemon-committed times the same runs to consumer lag 0;
#            target: ratio >= 0.5
#   latency  production -> alert arrival at BENCH_LATENCY_RATE events/s
#            (20000) for BENCH_LATENCY_SECS (20) with event time = now
#            (tests/tools/benchkit latency); target: p99 <= 25 ms;
#            churnd's fetch.wait.max.ms is BENCH_LATENCY_FETCH_WAIT_MS (2)
#            there, 10 in the other rows (see start_daemon)
#   memory   peak RSS (VmHWM) of churnd run over BENCH_MEMORY_CLIENTS
#            clients (1000000, two events each), default cache settings;
#            BENCH_MEMORY_STEPS (e.g. "250000 500000") adds smaller sizes
#            to the notes; target: <= 256 MiB
#   recovery churnd restarted on the memory row's state (largest size),
#            one new detractor event waiting: time from exec to lag 0 and
#            to its alert; target: <= 2 s. Also split into churnd's own
#            part (exec to "started": rules loaded, state open; plus
#            partition assigned to lag 0) and the group join in between,
#            which is the broker's: the mock cluster holds a join after
#            the last member left for session.timeout.ms - 1 s (44 s by
#            default), a real Kafka for group.initial.rebalance.delay.ms
# The Kafka rows use a standalone mock broker (tests/tools/benchkit
# broker, BENCH_PARTITIONS partitions per topic, 256): the mock keeps only
# about 5 MiB or 100,000 messages per partition, and filling the topics
# before churnd starts separates consume-and-process from production.
#
# Data: BENCH_EVENTS events (1000000) for BENCH_CLIENTS clients (100000),
# seed BENCH_SEED (1), made by BUILD/tests/gen into BUILD/bench-data/ and
# reused while those parameters are unchanged. Each measurement is the
# median of BENCH_RUNS runs (3), churnd and baseline runs interleaved.
#
# Prints the table and writes BUILD/bench.json (an array of row objects).
# Exit status: 0 measured (a row below its target says so in the table;
# BENCH_STRICT=1 turns that into exit status 3), 1 bad usage or missing
# binaries, 2 a run failed.
set -eu
cd "$(dirname "$0")/.."

build=${1:-}
if [ -z "$build" ]; then
    echo "usage: scripts/bench.sh BUILD_DIR [ROW...]" >&2
    exit 1
fi
shift
ALL_ROWS="replay daemon latency memory recovery"
rows=${*:-$ALL_ROWS}

events=${BENCH_EVENTS:-1000000}
clients=${BENCH_CLIENTS:-100000}
seed=${BENCH_SEED:-1}
runs=${BENCH_RUNS:-3}
strict=${BENCH_STRICT:-0}
partitions=${BENCH_PARTITIONS:-256}
lat_rate=${BENCH_LATENCY_RATE:-20000}
lat_fetch_wait=${BENCH_LATENCY_FETCH_WAIT_MS:-2}
lat_secs=${BENCH_LATENCY_SECS:-20}
lat_partitions=${BENCH_LATENCY_PARTITIONS:-2}
mem_clients=${BENCH_MEMORY_CLIENTS:-1000000}
mem_steps=${BENCH_MEMORY_STEPS:-}
http_port=${BENCH_HTTP_PORT:-19464}
rec_alert_secs=${BENCH_RECOVERY_ALERT_SECS:-30}

churnd=$build/churnd
gen=$build/tests/gen
parse_only=$build/tests/parse_only
benchkit=$build/tests/benchkit
kt=$build/tests/kt
for bin in "$churnd" "$gen" "$parse_only" "$benchkit" "$kt"; do
    if [ ! -x "$bin" ]; then
        echo "bench: $bin is missing (make BUILD=$build all tools)" >&2
        exit 1
    fi
done
for row in $rows; do
    case " $ALL_ROWS " in
        *" $row "*) ;;
        *) echo "bench: unknown row '$row' (rows: $ALL_ROWS)" >&2; exit 1 ;;
    esac
done

work=$(mktemp -d "${TMPDIR:-/tmp}/churnd-bench.XXXXXX")
bpid=""
dpid=""
cleanup() {
    [ -z "$dpid" ] || kill -9 "$dpid" 2>/dev/null || true
    [ -z "$bpid" ] || kill "$bpid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
: >"$work/rows.tsv"
: >"$work/rows.json"
: >"$work/measures.tsv"
: >"$work/notes"

fail() {
    echo "bench: $*" >&2
    exit 2
}

# seconds OUT ERR CMD...: wall-clock seconds of one run of CMD on stdout,
# CMD's own output and errors going to the files OUT and ERR. Fails when
# CMD does.
seconds() {
    out=$1
    err=$2
    shift 2
    t0=$(date +%s.%N)
    "$@" >"$out" 2>"$err" || return 1
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

# Median of the numbers on stdin, one per line.
median() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# The generated stream for the current parameters, made once and reused:
# its name carries the parameters and it is renamed into place only when
# complete, so an interrupted run never leaves a short file behind.
stream() {
    dir=$build/bench-data
    file=$dir/gen-seed$seed-clients$clients-events$events.jsonl
    if [ ! -s "$file" ]; then
        mkdir -p "$dir"
        echo "bench: generating $file" >&2
        "$gen" --seed "$seed" --clients "$clients" --events "$events" >"$file.tmp" ||
            fail "gen failed"
        mv "$file.tmp" "$file"
    fi
    echo "$file"
}

# record ROW EVENTS SECONDS BASELINE_SECONDS TARGET_RATIO CMD BASELINE_CMD RUNS BASE_RUNS
# Adds one row to the table and to bench.json.
record() {
    awk -v row="$1" -v n="$2" -v s="$3" -v bs="$4" -v target="$5" \
        -v cmd="$6" -v bcmd="$7" -v runs="$8" -v bruns="$9" \
        -v tsv="$work/rows.tsv" -v json="$work/rows.json" '
    function q(x) { gsub(/\\/, "\\\\", x); gsub(/"/, "\\\"", x); return "\"" x "\"" }
    BEGIN {
        eps = n / s; beps = n / bs; ratio = eps / beps
        ok = ratio >= target ? "yes" : "NO"
        printf "%s\t%d\t%.2f\t%.0f\t%.0f\t%.3f\t>= %s\t%s\n", row, n, s, eps, beps, ratio, target, ok >> tsv
        printf "{\"row\": %s, \"events\": %d, \"seconds\": %.3f, \"events_per_s\": %.1f, ", q(row), n, s, eps >> json
        printf "\"baseline_seconds\": %.3f, \"baseline_events_per_s\": %.1f, \"ratio\": %.4f, ", bs, beps, ratio >> json
        printf "\"target\": {\"ratio_min\": %s}, \"met\": %s, ", target, ok == "yes" ? "true" : "false" >> json
        printf "\"runs_seconds\": [%s], \"baseline_runs_seconds\": [%s], ", runs, bruns >> json
        printf "\"command\": %s, \"baseline_command\": %s}\n", q(cmd), q(bcmd) >> json
    }'
}

# measure ROW METRIC VALUE TARGET_MAX RUNS CMD NOTE
# Adds one row whose result is one number with an upper target (ms, MiB,
# s) to the second table and to bench.json.
measure() {
    awk -v row="$1" -v metric="$2" -v v="$3" -v max="$4" -v runs="$5" \
        -v cmd="$6" -v note="$7" -v tsv="$work/measures.tsv" -v json="$work/rows.json" '
    function q(x) { gsub(/\\/, "\\\\", x); gsub(/"/, "\\\"", x); return "\"" x "\"" }
    BEGIN {
        ok = v + 0 <= max + 0 ? "yes" : "NO"
        printf "%s\t%s\t%s\t<= %s\t%s\t%s\n", row, metric, v, max, ok, note >> tsv
        printf "{\"row\": %s, \"metric\": %s, \"value\": %s, \"target\": {\"max\": %s}, ", q(row), q(metric), v, max >> json
        printf "\"met\": %s, \"runs\": [%s], \"command\": %s, \"note\": %s}\n", ok == "yes" ? "true" : "false", runs, q(cmd), q(note) >> json
    }'
}

note() {
    echo "bench: $*" >&2
    echo "$*" >>"$work/notes"
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f\n", b - a }'; }

# The stream split by source (gen --out-crm/--out-helpdesk) for CLIENTS
# and EVENTS: sets crm_file and hd_file, made once and reused.
split_stream() {
    dir=$build/bench-data
    base=$dir/gen-seed$seed-clients$1-events$2
    crm_file=$base.crm.jsonl
    hd_file=$base.helpdesk.jsonl
    if [ ! -s "$crm_file" ] || [ ! -s "$hd_file" ]; then
        mkdir -p "$dir"
        echo "bench: generating $base.{crm,helpdesk}.jsonl" >&2
        "$gen" --seed "$seed" --clients "$1" --events "$2" \
            --out-crm "$crm_file.tmp" --out-helpdesk "$hd_file.tmp" >/dev/null ||
            fail "gen failed"
        mv "$crm_file.tmp" "$crm_file"
        mv "$hd_file.tmp" "$hd_file"
    fi
}

# start_broker PARTITIONS: a standalone mock broker with churnd's four
# default topics; sets bpid and bs (its bootstrap address).
start_broker() {
    "$benchkit" broker -p "$1" crm.events helpdesk.events churn.alerts \
        churn.deadletter >"$work/broker.out" 2>"$work/broker.err" &
    bpid=$!
    bs=""
    tries=0
    while [ -z "$bs" ]; do
        bs=$(sed -n 's/^bootstrap=//p' "$work/broker.out")
        tries=$((tries + 1))
        if [ "$tries" -gt 600 ] || ! kill -0 "$bpid" 2>/dev/null; then
            cat "$work/broker.err" >&2
            fail "the broker did not start"
        fi
        [ -n "$bs" ] || sleep 0.05
    done
}

stop_broker() {
    kill "$bpid" 2>/dev/null || true
    wait "$bpid" 2>/dev/null || true
    bpid=""
}

# fill_topics: crm_file and hd_file into their topics, checked complete.
fill_topics() {
    "$benchkit" fill -b "$bs" -t crm.events "$crm_file" >"$work/fill.out" ||
        fail "filling crm.events failed"
    "$benchkit" fill -b "$bs" -t helpdesk.events "$hd_file" >>"$work/fill.out" ||
        fail "filling helpdesk.events failed"
    note "filled: $(paste -sd' ' "$work/fill.out")"
}

# start_daemon NAME GROUP STATE [FETCH_WAIT_MS]: churnd run against $bs
# with default settings except where the bench needs its own (state, group, a 200 ms
# idle timeout so that the tail is released promptly, an HTTP port of its
# own, and a short fetch.wait.max.ms, 10 ms unless given: the mock holds
# a fetch that finds nothing for the whole wait, 500 ms by default, even
# when events arrive meanwhile, where Kafka answers at once; churnd sets
# 10 ms for its embedded broker. The latency row uses 2 ms, as close to
# Kafka's prompt answer as the mock's polling gets without the fetches
# themselves costing (its own alert reader uses 1 ms); the rows over 256
# partitions keep 10 ms, where every empty fetch makes the mock walk the
# message sets of each partition). Sets dpid and dlog, and t_exec to the
# wall time just before exec.
start_daemon() {
    dlog=$work/$1.log
    t_exec=$(now)
    CHURND_KAFKA_BOOTSTRAP_SERVERS=$bs "$churnd" run --set "state.dir=$3" \
        --set rules.dir=rules --set "input.group_id=$2" \
        --set time.idle_timeout=200ms --set "http.listen=127.0.0.1:$http_port" \
        --set "kafka.fetch.wait.max.ms=${4:-10}" \
        >"$work/$1.out" 2>"$dlog" &
    dpid=$!
}

# stop_daemon: SIGTERM, which must drain and exit 0.
stop_daemon() {
    kill -TERM "$dpid"
    rc=0
    wait "$dpid" || rc=$?
    dpid=""
    if [ "$rc" -ne 0 ]; then
        tail -n 5 "$dlog" >&2
        note "churnd exited with $rc after SIGTERM (see above)"
    fi
}

# wait_log PATTERN SECONDS: until the daemon's log matches (grep -E).
wait_log() {
    tries=0
    until grep -Eq "$1" "$dlog"; do
        tries=$((tries + 1))
        if [ "$tries" -gt $(($2 * 50)) ] || ! kill -0 "$dpid" 2>/dev/null; then
            tail -n 20 "$dlog" >&2
            fail "churnd did not log /$1/ within $2 s"
        fi
        sleep 0.02
    done
}

# log_time PATTERN: the first matching line's ts= as epoch seconds.
log_time() {
    ts=$(grep -E -m1 "$1" "$dlog" | sed -n 's/^ts=\([^ ]*\) .*/\1/p')
    [ -n "$ts" ] || fail "no /$1/ line with a ts= field in $dlog"
    date -d "$ts" +%s.%N
}

rss_mib() {
    awk '/^VmHWM:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$1/status"
}

# ---- rows -------------------------------------------------------------------

# replay: churnd replay over the stream with a fresh state directory each
# run, alerts to /dev/null; baseline: parse every line with cJSON and free
# it. The replay must read every line as valid, or the number is not
# comparable.
row_replay() {
    file=$(stream)
    cmd="$churnd replay -r rules --state STATE $file > /dev/null"
    bcmd="$parse_only $file"
    : >"$work/replay.s"
    : >"$work/parse.s"
    i=1
    while [ "$i" -le "$runs" ]; do
        state=$work/state-$i
        echo "bench: replay run $i/$runs" >&2
        s=$(seconds /dev/null "$work/replay.err" \
            "$churnd" replay -r rules --state "$state" "$file") ||
            { cat "$work/replay.err" >&2; fail "churnd replay failed"; }
        rm -rf "$state"
        grep -q ' 0 invalid;' "$work/replay.err" ||
            { cat "$work/replay.err" >&2; fail "churnd replay found invalid lines"; }
        echo "$s" >>"$work/replay.s"
        s=$(seconds "$work/parse.out" "$work/parse.err" "$parse_only" "$file") ||
            { cat "$work/parse.err" >&2; fail "parse_only failed"; }
        grep -q "^lines $events parsed $events " "$work/parse.out" ||
            fail "parse_only: $(cat "$work/parse.out")"
        echo "$s" >>"$work/parse.s"
        i=$((i + 1))
    done
    sed 's/^/bench:   /' "$work/replay.err" >&2
    record replay "$events" "$(median <"$work/replay.s")" "$(median <"$work/parse.s")" 0.4 \
        "$cmd" "$bcmd" "$(paste -sd, "$work/replay.s")" "$(paste -sd, "$work/parse.s")"
}


# daemon: the topics are filled once, before any run; each run starts a
# fresh churnd (new state directory and group) on them and takes two
# times from exec: until the group's committed offsets reach the end (lag
# 0: every event consumed and its state and alerts committed; events still
# held for the watermark are stored) and until churnd logs
# "settled position=N" (every event applied, every due timer fired, alerts
# acknowledged). The baseline reads both topics to their end with two
# concurrent kcat consumers, as churnd reads both.
row_daemon() {
    split_stream "$clients" "$events"
    cmd="churnd run (bootstrap=mock broker, $partitions partitions, time.idle_timeout=200ms) until lag 0 / settled position=$events"
    bcmd="kcat -C -b BS -t crm.events -e -o beginning -q >/dev/null & kcat -C -b BS -t helpdesk.events -e -o beginning -q >/dev/null; wait"
    : >"$work/daemon.s"
    : >"$work/lag0.s"
    : >"$work/kcat.s"
    i=1
    while [ "$i" -le "$runs" ]; do
        echo "bench: daemon run $i/$runs" >&2
        # A broker of its own for each run: on a shared one each run was
        # slower than the one before (15.7, 19.1, 20.9 s), as the mock
        # kept the earlier runs' groups and alerts.
        start_broker "$partitions"
        fill_topics
        t0=$(now)
        kcat -C -b "$bs" -t crm.events -e -o beginning -q >/dev/null 2>"$work/kcat1.err" &
        k1=$!
        kcat -C -b "$bs" -t helpdesk.events -e -o beginning -q >/dev/null 2>"$work/kcat2.err" || fail "kcat failed"
        wait "$k1" || fail "kcat failed"
        elapsed "$t0" "$(now)" >>"$work/kcat.s"
        start_daemon "daemon-$i" "bench-daemon-$i" "$work/state-daemon"
        "$kt" wait-caught-up -b "$bs" -g "bench-daemon-$i" \
            -t crm.events,helpdesk.events -T 3600 ||
            { tail -n 20 "$dlog" >&2; fail "churnd did not catch up"; }
        elapsed "$t_exec" "$(now)" >>"$work/lag0.s"
        wait_log "msg=settled position=$events( |\$)" 3600
        elapsed "$t_exec" "$(now)" >>"$work/daemon.s"
        # The count the daemon keeps, on its settled line: the log's
        # msg=alert lines are thinned out by the log's flood suppression.
        n_alerts=$(sed -n "s/.*msg=settled position=$events .* alerts=\([0-9]*\).*/\1/p" "$dlog" | head -n 1)
        note "daemon run $i: peak RSS $(rss_mib "$dpid") MiB, ${n_alerts:-?} alerts"
        stop_daemon
        # Events applied behind the watermark: when every partition went
        # idle at once, the watermark jumped to the wall clock (see
        # docs/bench.md), and the alerts differ from run to run.
        note "daemon run $i: $(sed -n 's/.*msg=stopped .* late=\([0-9]*\) .*/\1/p' "$dlog") events applied late"
        rm -rf "$work/state-daemon"
        stop_broker
        i=$((i + 1))
    done
    record daemon "$events" "$(median <"$work/daemon.s")" "$(median <"$work/kcat.s")" 0.5 \
        "$cmd" "$bcmd" "$(paste -sd, "$work/daemon.s")" "$(paste -sd, "$work/kcat.s")"
    record daemon-committed "$events" "$(median <"$work/lag0.s")" "$(median <"$work/kcat.s")" 0.5 \
        "$cmd" "$bcmd" "$(paste -sd, "$work/lag0.s")" "$(paste -sd, "$work/kcat.s")"
}

# latency: churnd on a broker of BENCH_LATENCY_PARTITIONS partitions (2:
# the mock broker finds a fetch's offset by walking the partition's
# message sets from the oldest, a few thousand per partition at this rate,
# so its cost per fetch grows with the partitions and at 8 the broker,
# not churnd, set the latency; with event time = wall clock the fewer and
# busier the partitions, the closer the watermark follows, see
# docs/bench.md); benchkit latency paces the events, measures production
# -> alert arrival for the triggering events after a 3 s warm-up. Each
# run: fresh broker, state and group.
row_latency() {
    : >"$work/p50"
    : >"$work/p99"
    : >"$work/p999"
    cmd="benchkit latency -b BS -t crm.events -a churn.alerts -r $lat_rate -d $lat_secs (churnd run, $lat_partitions partitions, defaults but time.idle_timeout=200ms, kafka.fetch.wait.max.ms=$lat_fetch_wait)"
    i=1
    while [ "$i" -le "$runs" ]; do
        echo "bench: latency run $i/$runs" >&2
        start_broker "$lat_partitions"
        start_daemon "latency-$i" "bench-latency-$i" "$work/state-latency" "$lat_fetch_wait"
        wait_log 'msg="partition assigned"' 60
        "$benchkit" latency -b "$bs" -t crm.events -a churn.alerts -r "$lat_rate" \
            -d "$lat_secs" >"$work/lat.out" 2>"$work/lat.err" ||
            { cat "$work/lat.out" "$work/lat.err" >&2; note "latency run $i incomplete: $(cat "$work/lat.out")"; }
        note "latency run $i: $(cat "$work/lat.out"); churnd peak RSS $(rss_mib "$dpid") MiB"
        for p in p50 p99 p999; do
            sed -n "s/.* ${p}_ms \([0-9.]*\).*/\1/p" "$work/lat.out" >>"$work/$p"
        done
        stop_daemon
        stop_broker
        rm -rf "$work/state-latency"
        i=$((i + 1))
    done
    [ -s "$work/p99" ] || fail "no latency run measured anything"
    p50=$(median <"$work/p50")
    p999=$(median <"$work/p999")
    measure latency p99_ms "$(median <"$work/p99")" 25 "$(paste -sd, "$work/p99")" "$cmd" \
        "p50 $p50 ms, p99.9 $p999 ms at $lat_rate events/s"
}

# The daemon's state with N clients (two gen events each), and a broker
# with one partition per input topic that stays up for the recovery row.
# Through the daemon, building it takes hours at 1,000,000 clients: every
# client's daily `every` ticks from the stream's start fire one by one. So
# `churnd replay --state` builds it (its look-ahead skips the quiet ticks)
# from a stream of the 180 days up to today, which puts every client in
# input partition 0, as replay keys it; then churnd run settles on it (the
# ticks since the stream's end, counting the timer index). Prints the
# daemon's peak RSS in MiB; leaves the state in $work/state-mem-N.
build_state() {
    n=$1
    start=$(date -u -d "$(date -u +%F) - 180 days" +%FT00:00:00Z)
    file=$build/bench-data/gen-seed$seed-clients$n-events$((2 * n))-start$start.jsonl
    if [ ! -s "$file" ]; then
        mkdir -p "$build/bench-data"
        echo "bench: generating $file" >&2
        "$gen" --seed "$seed" --clients "$n" --events $((2 * n)) --start "$start" \
            >"$file.tmp" || fail "gen failed"
        mv "$file.tmp" "$file"
    fi
    rm -rf "$work/state-mem-$n"
    echo "bench: replaying $file into the state" >&2
    t0=$(now)
    "$churnd" replay -r rules --state "$work/state-mem-$n" "$file" >/dev/null \
        2>"$work/replay-mem.err" || { cat "$work/replay-mem.err" >&2; fail "replay failed"; }
    replay_secs=$(elapsed "$t0" "$(now)")
    start_broker 1
    start_daemon "mem-$n" "bench-mem" "$work/state-mem-$n"
    wait_log "msg=settled " 7200
    mem_rss=$(rss_mib "$dpid")
    mem_secs=$(elapsed "$t_exec" "$(now)")
    stop_daemon
    note "state of $n clients ($((2 * n)) events from $start): replayed in $replay_secs s; churnd run settled on it in $mem_secs s, peak RSS $mem_rss MiB; state dir $(du -sm "$work/state-mem-$n" | cut -f1) MiB"
}

# memory: peak RSS over the largest size; the smaller BENCH_MEMORY_STEPS
# go to the notes, to show the growth. One run per size: the figure does
# not depend on a busy neighbour as a time does.
row_memory() {
    for n in $mem_steps; do
        [ "$n" = "$mem_clients" ] && continue
        build_state "$n"
        stop_broker
        rm -rf "$work/state-mem-$n"
    done
    build_state "$mem_clients"
    mem_done=$mem_clients
    measure memory peak_rss_mib "$mem_rss" 256 "$mem_rss" \
        "churnd run settling on a state of $mem_clients clients ($((2 * mem_clients)) events, replayed), default cache settings" \
        "VmHWM of churnd; $mem_clients clients"
}

# recovery: restart churnd on the memory row's state with one detractor
# event (NPS 2, an immediate alert) waiting on the topic; time from exec
# to lag 0 and to the alert. BENCH_RUNS restarts, each with a new event.
row_recovery() {
    if [ "${mem_done:-}" != "$mem_clients" ]; then
        build_state "$mem_clients"
        mem_done=$mem_clients
    fi
    : >"$work/rec.s"
    : >"$work/rec-assigned.s"
    : >"$work/rec-alert.s"
    : >"$work/rec-own.s"
    i=1
    while [ "$i" -le "$runs" ]; do
        echo "bench: recovery run $i/$runs" >&2
        id="recovery-$$-$i"
        # A client of its own per run: the same client's second NPS 2 finds
        # detractor already firing, and a firing rule is not sent again.
        printf '%s\t{"id":"%s","type":"survey.nps","client_id":"%s","ts":%s,"data":{"score":2}}\n' \
            "$id" "$id" "$id" "$(date +%s%3N)" | kcat -P -b "$bs" -t crm.events -K '\t' ||
            fail "kcat -P failed"
        # A group of its own per restart: churnd resumes from the offsets in
        # its state directory, not the group's, and the mock broker holds a
        # rejoin of the old group for the leaving member's whole session
        # timeout (about 44 s, docs/bench.md), which a real Kafka does not
        # after LeaveGroup. The group's committed offsets only matter to
        # lag tools, and kt reads churnd's own commits of the new group.
        group="bench-rec-$$-$i"
        start_daemon "recovery-$i" "$group" "$work/state-mem-$mem_clients"
        wait_log 'msg="partition assigned"' 600
        elapsed "$t_exec" "$(now)" >>"$work/rec-assigned.s"
        "$kt" wait-caught-up -b "$bs" -g "$group" -t crm.events,helpdesk.events -T 600 ||
            fail "churnd did not catch up after the restart"
        t_lag0=$(now)
        elapsed "$t_exec" "$t_lag0" >>"$work/rec.s"
        # churnd's own part, from its log's millisecond timestamps: exec to
        # "started", plus the first assignment to lag 0.
        t_started=$(log_time 'msg=started')
        t_assigned=$(log_time 'msg="partition assigned"')
        awk -v e="$t_exec" -v s="$t_started" -v a="$t_assigned" -v l="$t_lag0" \
            'BEGIN { printf "%.3f\n", (s - e) + (l - a) }' >>"$work/rec-own.s"
        if "$benchkit" await-alert -b "$bs" -a churn.alerts -i "$id" -T "$rec_alert_secs"; then
            elapsed "$t_exec" "$(now)" >>"$work/rec-alert.s"
        else
            echo "timeout" >>"$work/rec-alert.s"
            note "recovery run $i: no alert for the new event within $rec_alert_secs s after lag 0"
        fi
        stop_daemon
        i=$((i + 1))
    done
    stop_broker
    rm -rf "$work/state-mem-$mem_clients"
    measure recovery seconds_to_lag0 "$(median <"$work/rec.s")" 2 "$(paste -sd, "$work/rec.s")" \
        "churnd run on the state of $mem_clients clients, one new event waiting" \
        "assigned after $(median <"$work/rec-assigned.s") s; to the alert: runs $(paste -sd, "$work/rec-alert.s") s"
    measure recovery churnd_own_seconds "$(median <"$work/rec-own.s")" 2 "$(paste -sd, "$work/rec-own.s")" \
        "the same runs: exec to started, plus assigned to lag 0" \
        "the rest is the group join, which the broker times"
}

# ---- run and report ---------------------------------------------------------

for row in $rows; do
    "row_$row"
done

# The table, columns padded to their widest cell (awk, not column(1): one
# package less on a fresh machine).
{
    printf 'row\tevents\tseconds\tevents/s\tbaseline events/s\tratio\ttarget\tmet\n'
    cat "$work/rows.tsv"
} | awk -F '\t' '{ for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }
                    if (NF > nf) nf = NF }
    END { for (r = 1; r <= NR; r++) { line = ""
            for (i = 1; i <= nf; i++) line = line (i < nf ? sprintf("%-" w[i] "s  ", c[r, i]) : c[r, i])
            print line } }'
if [ -s "$work/measures.tsv" ]; then
    echo
    {
        printf 'row\tmetric\tvalue\ttarget\tmet\tnote\n'
        cat "$work/measures.tsv"
    } | awk -F '\t' '{ for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }
                        if (NF > nf) nf = NF }
        END { for (r = 1; r <= NR; r++) { line = ""
                for (i = 1; i <= nf; i++) line = line (i < nf ? sprintf("%-" w[i] "s  ", c[r, i]) : c[r, i])
                print line } }'
fi
if [ -s "$work/notes" ]; then
    echo
    sed 's/^/note: /' "$work/notes"
fi
awk 'BEGIN { print "[" } NR > 1 { print prev "," } { prev = "  " $0 }
     END { if (NR) print prev; print "]" }' "$work/rows.json" >"$build/bench.json.tmp"
mv "$build/bench.json.tmp" "$build/bench.json"
echo "bench: wrote $build/bench.json (median of $runs runs, seed $seed)"

if [ "$strict" = 1 ] && grep -q '	NO' "$work/rows.tsv" "$work/measures.tsv"; then
    exit 3
fi
exit 0
