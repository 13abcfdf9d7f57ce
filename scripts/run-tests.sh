#!/bin/sh
# Run churnd's test binaries and print one closing line "N passed, N failed".
# usage: run-tests.sh BUILD_DIR [unit|integration|fuzz|all]
# Each cmocka binary runs in its own process with a time bound; a binary that
# crashes or times out counts as one failure even if it printed nothing.
set -u
build=${1:-build}
what=${2:-all}
passed=0
failed=0
failed_names=""
not_run=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_bin() { # name timeout cmd...
    name=$1; limit=$2; shift 2
    printf '== %s\n' "$name"
    timeout -k 10 "$limit" "$@" >"$log" 2>&1
    rc=$?
    cat "$log"
    ok=$(grep -c '^\[       OK \]' "$log")
    bad=$(grep -c '^\[  FAILED  \] [a-zA-Z_]' "$log")
    passed=$((passed + ok))
    failed=$((failed + bad))
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        failed=$((failed + 1))
        echo "!! $name exited with status $rc"
    fi
    if [ "$rc" -ne 0 ]; then failed_names="$failed_names $name"; fi
}

run_script() { # name timeout cmd... ; a script is one test
    name=$1; limit=$2; shift 2
    printf '== %s\n' "$name"
    if timeout -k 10 "$limit" "$@"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1)); failed_names="$failed_names $name"
    fi
}

if [ "$what" = all ] || [ "$what" = unit ]; then
    run_script check-core 60 scripts/check-core.sh
    for t in "$build"/tests/unit/test_*; do
        [ -x "$t" ] || continue
        run_bin "$(basename "$t")" 300 "$t"
    done
    if [ -x "$build/churnd" ]; then
        run_script check-readme 60 env CHURND_BIN="$build/churnd" scripts/check-readme.sh
        # Packaging (SPEC section 8): make install, and the unit it writes.
        run_script check-install 120 scripts/check-install.sh "$build"
        run_script check-systemd 120 scripts/check-systemd.sh "$build"
        # The Docker packaging, statically: no Docker engine is needed.
        run_script check-compose 120 env CHURND_BIN="$build/churnd" scripts/check-compose.sh
    fi
    if [ -x "$build/churnd" ] && ls rules/tests/*.yaml >/dev/null 2>&1; then
        if "$build/churnd" help | grep -q '^  test '; then
            for f in rules/tests/*.yaml; do
                run_script "rules test $f" 120 "$build/churnd" test "$f"
            done
        else
            # The rule-test runner is still being built (issue 3): say so
            # loudly rather than count these as passed or fail the build.
            not_run="$(ls rules/tests/*.yaml | wc -l) rule test files (churnd test is not built yet)"
        fi
    fi
fi
# A short libFuzzer run per target of tests/fuzz/ (scripts/fuzz.sh builds
# them with clang into build-fuzz/; `make fuzz` runs longer). Each target is
# one test. Not repeated for a sanitizer build (make check-asan): the
# targets carry ASan and UBSan themselves and do not use BUILD_DIR.
if [ "$what" = all ] || [ "$what" = fuzz ]; then
    case $build in
        *asan*) ;;
        *)
            for f in tests/fuzz/fuzz_*.c; do
                [ -f "$f" ] || continue
                t=${f#tests/fuzz/fuzz_}
                t=${t%.c}
                run_script "fuzz $t" 300 scripts/fuzz.sh "${FUZZ_CHECK_SECONDS:-10}" "$t"
            done
            ;;
    esac
fi
if [ "$what" = all ] || [ "$what" = integration ]; then
    bin="$build/churnd"
    # make check-valgrind: the daemon runs under memcheck (VALGRIND_CHURND
    # is read by the wrapper, which config's CHURND_* check does not see).
    if [ "${CHURND_TEST_VALGRIND:-0}" = 1 ]; then
        bin=scripts/valgrind-churnd.sh
        export VALGRIND_CHURND="$build/churnd"
    fi
    for t in "$build"/tests/integration/test_*; do
        [ -x "$t" ] || continue
        run_bin "$(basename "$t")" 1200 env CHURND_BIN="$bin" \
            CHURND_KT="$build/tests/kt" "$t"
    done
    # churnd under the unit's sandbox, rebuilt with mount namespaces,
    # seccomp and strace. Not for sanitizer or valgrind runs: their
    # runtimes make calls (ptrace for the leak check) no service needs.
    case $build in
        *asan*) ;;
        *)
            if [ "${CHURND_TEST_VALGRIND:-0}" = 1 ]; then
                :
            elif [ "$(id -u)" -eq 0 ]; then
                run_script check-sandbox 300 scripts/check-sandbox.sh "$build"
            else
                not_run="${not_run:+$not_run; }check-sandbox (needs root for mount namespaces)"
            fi
            ;;
    esac
fi
[ -n "$failed_names" ] && echo "failing:$failed_names"
[ -n "${not_run:-}" ] && echo "NOT RUN: $not_run"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
