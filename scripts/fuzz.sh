#!/bin/sh
# Build churnd's libFuzzer targets (tests/fuzz/fuzz_<target>.c) with clang
# and run each for a while; fail on any crash, leak, undefined behaviour,
# timeout or out-of-memory, naming the target and the input that caused it.
#
# usage: scripts/fuzz.sh SECONDS [TARGET...]     targets: event rules expr
#        (SECONDS 0 only builds; libFuzzer itself would take 0 as "forever")
#
# Everything happens under $FUZZ_OUT (default build-fuzz/): the binaries,
# a working copy of each seed corpus (corpus/<target>, where libFuzzer adds
# what it finds; the seeds in tests/fuzz/corpus/ are never written),
# findings (artifacts/<target>/) and libFuzzer's log (<target>.log).
# Each run starts from a fresh copy of the seeds, so a short run spends its
# time fuzzing rather than replaying what earlier runs found; set
# FUZZ_KEEP_CORPUS=1 to go on from the last run's corpus instead.
# A target is rebuilt only when a source, a header or this script changed.
#
# To reproduce a finding: build-fuzz/fuzz_<target> <input file>. Once
# fixed, copy the input into tests/fuzz/corpus/<target>/ and add a unit
# test for it.
set -u
cd "$(dirname "$0")/.."

usage() {
    echo "usage: scripts/fuzz.sh SECONDS [TARGET...]  (targets: event rules expr)" >&2
    exit 2
}
[ $# -ge 1 ] || usage
secs=$1
shift
case $secs in '' | *[!0-9]*) usage ;; esac
targets=${*:-event rules expr}
out=${FUZZ_OUT:-build-fuzz}
cc=${FUZZ_CC:-clang}
# An input running longer than this many seconds is reported as a hang.
per_input=${FUZZ_TIMEOUT:-10}

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "fuzz: $cc not found; run 'make deps' (clang and libclang-rt-14-dev)" >&2
    exit 1
fi

# The daemon sources each target links: only the pure core it exercises,
# so no Kafka, RocksDB or libuv is needed.
core="daemon/common.c daemon/timeutil.c daemon/event.c"
sources() {
    case $1 in
        event) echo "$core" ;;
        expr) echo "$core daemon/expr.c" ;;
        rules) echo "$core daemon/expr.c daemon/features.c daemon/rules_load.c \
daemon/cstate.c daemon/engine.c daemon/alert.c daemon/ledger.c" ;;
        *) return 1 ;;
    esac
}

pkgs="libcjson yaml-0.1"
# -fno-sanitize-recover: UBSan otherwise prints and carries on, and
# libFuzzer would not count the input as a finding.
cflags="-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
-fno-sanitize-recover=all -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -Iinclude \
$(pkg-config --cflags $pkgs)"
libs="$(pkg-config --libs $pkgs) -lm"

build() { # target -> $out/fuzz_<target>, when out of date
    t=$1
    bin=$out/fuzz_$t
    srcs=$(sources "$t")
    if [ -x "$bin" ] && [ -z "$(find $srcs "tests/fuzz/fuzz_$t.c" include/churnd \
            scripts/fuzz.sh -newer "$bin" 2>/dev/null | head -n 1)" ]; then
        return 0
    fi
    echo "fuzz: building $bin"
    # shellcheck disable=SC2086
    $cc $cflags -o "$bin.tmp" "tests/fuzz/fuzz_$t.c" $srcs $libs &&
        mv -f "$bin.tmp" "$bin"
}

stat_of() { # name log -> value of libFuzzer's final "stat::name"
    sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}

failed=""
mkdir -p "$out" || exit 1
for t in $targets; do
    if ! sources "$t" >/dev/null || [ ! -f "tests/fuzz/fuzz_$t.c" ]; then
        echo "fuzz: unknown target '$t' (event, rules, expr)" >&2
        failed="$failed $t"
        continue
    fi
    if ! build "$t"; then
        echo "fuzz: FAIL $t: the target does not build" >&2
        failed="$failed $t"
        continue
    fi
    [ "$secs" -eq 0 ] && continue
    corpus=$out/corpus/$t
    arts=$out/artifacts/$t
    log=$out/$t.log
    [ "${FUZZ_KEEP_CORPUS:-0}" = 1 ] || rm -rf "$corpus"
    mkdir -p "$corpus" "$arts"
    if [ -d "tests/fuzz/corpus/$t" ]; then
        cp -- "tests/fuzz/corpus/$t"/* "$corpus/" 2>/dev/null
    fi
    set -- -max_total_time="$secs" -timeout="$per_input" -rss_limit_mb=2048 \
        -artifact_prefix="$arts/" -print_final_stats=1
    [ -f "tests/fuzz/$t.dict" ] && set -- "$@" -dict="tests/fuzz/$t.dict"
    before=$(ls "$corpus" | wc -l)
    # Scratch files of the target (fuzz_rules writes its input there): a
    # crash skips the target's own clean-up, so keep them here, not in /tmp.
    scratch=$out/tmp/$t
    rm -rf "$scratch"
    mkdir -p "$scratch"
    start=$(date +%s)
    TMPDIR=$scratch UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$out/fuzz_$t" "$@" "$corpus" >"$log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    runs=$(stat_of number_of_executed_units "$log")
    speed=$(stat_of average_exec_per_sec "$log")
    after=$(ls "$corpus" | wc -l)
    if [ "$rc" -eq 0 ]; then
        printf 'fuzz: ok   %-6s %4ss  %10s runs  %7s exec/s  corpus %s (+%s)\n' \
            "$t" "$took" "${runs:-?}" "${speed:-?}" "$after" "$((after - before))"
        continue
    fi
    failed="$failed $t"
    input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    # What went wrong: the sanitizer's or libFuzzer's summary, and the
    # first line that says more (a UBSan report, a check of the target).
    what=$(sed -n 's/^SUMMARY: //p' "$log" | head -n 1)
    why=$(grep -m 1 -E 'runtime error: |^fuzz_[a-z]+: ' "$log")
    echo "== $log (end)" >&2
    tail -n 60 "$log" >&2
    echo "fuzz: FAIL $t (exit $rc): ${what:-see $log}" >&2
    [ -n "$why" ] && echo "fuzz: FAIL $t: $why" >&2
    if [ -n "$input" ]; then
        echo "fuzz: FAIL $t: input $input" >&2
        echo "fuzz: reproduce with: $out/fuzz_$t $input" >&2
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz: failing:$failed" >&2
    exit 1
fi
exit 0
