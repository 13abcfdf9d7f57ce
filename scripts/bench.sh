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
# Planned: daemon (end-to-end throughput through the embedded broker vs a
# raw kcat consume), latency, memory, recovery (kill -9 and catch up).
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
ALL_ROWS="replay"
rows=${*:-$ALL_ROWS}

events=${BENCH_EVENTS:-1000000}
clients=${BENCH_CLIENTS:-100000}
seed=${BENCH_SEED:-1}
runs=${BENCH_RUNS:-3}
strict=${BENCH_STRICT:-0}

churnd=$build/churnd
gen=$build/tests/gen
parse_only=$build/tests/parse_only
for bin in "$churnd" "$gen" "$parse_only"; do
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
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
: >"$work/rows.tsv"
: >"$work/rows.json"

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
awk 'BEGIN { print "[" } NR > 1 { print prev "," } { prev = "  " $0 }
     END { if (NR) print prev; print "]" }' "$work/rows.json" >"$build/bench.json.tmp"
mv "$build/bench.json.tmp" "$build/bench.json"
echo "bench: wrote $build/bench.json (median of $runs runs, seed $seed)"

if [ "$strict" = 1 ] && grep -q '	NO$' "$work/rows.tsv"; then
    exit 3
fi
exit 0
