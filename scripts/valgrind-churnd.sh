#!/bin/sh
# Run churnd under valgrind's memcheck, for `make check-valgrind`: the
# integration tests start this script as CHURND_BIN. exec keeps the pid,
# so the tests' signals reach the daemon itself. Any memcheck error or a
# definite/indirect leak turns the exit status into 99, which the tests
# see as a failed exit.
here=$(dirname "$0")
exec valgrind --quiet --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect \
    --track-fds=no "${VALGRIND_CHURND:-$here/../build/churnd}" "$@"
