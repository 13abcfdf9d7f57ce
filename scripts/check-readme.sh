#!/bin/sh
# The README's options table must be exactly what `churnd config --markdown`
# prints from the options table in daemon/config.c. With --fix, rewrite it.
set -eu
cd "$(dirname "$0")/.."
bin=${CHURND_BIN:-build/churnd}
want=$(mktemp)
trap 'rm -f "$want" README.md.new' EXIT
"$bin" config --markdown >"$want"
awk -v tbl="$want" '
    /<!-- options:begin -->/ { print; while ((getline l < tbl) > 0) print l; skip = 1; next }
    /<!-- options:end -->/ { skip = 0 }
    !skip { print }
' README.md >README.md.new
if [ "${1:-}" = "--fix" ]; then
    mv README.md.new README.md
    echo "README.md options table updated"
    exit 0
fi
if ! cmp -s README.md README.md.new; then
    echo "check-readme: README.md's options table differs from 'churnd config --markdown';" >&2
    echo "check-readme: run scripts/check-readme.sh --fix" >&2
    diff README.md README.md.new >&2 || true
    exit 1
fi
echo "check-readme: options table matches the config table"
