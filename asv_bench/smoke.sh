#!/usr/bin/env bash
# Quick smoke of every asv benchmark, so none rots (called by .ci/run).
#
#   bash asv_bench/smoke.sh            # with the interpreter on PATH ("python")
#   PYTHON=/path/to/python bash asv_bench/smoke.sh
#
# Needs asv (pip install -e '.[bench]' in the checkout) and langstream installed in that
# interpreter.  Runs `asv check` (imports, signatures) and one quick run of
# every benchmark on small inputs (LANGSTREAM_ASV_SMOKE=1) against the
# installed langstream; nothing is saved.  The machine file goes to a
# throw-away HOME.  Exits non-zero if any benchmark fails; takes a few seconds.
set -euo pipefail

cd "$(dirname "$0")"
PYTHON="${PYTHON:-python}"
SMOKE_HOME="$(mktemp -d "${TMPDIR:-/tmp}/langstream-asv-smoke.XXXXXX")"
trap 'rm -rf "$SMOKE_HOME"' EXIT
export LANGSTREAM_ASV_SMOKE=1

asv() { HOME="$SMOKE_HOME" "$PYTHON" -m asv "$@"; }

asv machine --yes >/dev/null
asv check --python=same
LOG="$SMOKE_HOME/run.log"
status=0
asv run --quick --python=same --dry-run --show-stderr --launch-method forkserver \
    2>&1 | tee "$LOG" || status=$?
# asv exits 2 when a benchmark fails; also catch a failure it only prints
if [ "$status" -ne 0 ] || grep -Eq '(^|[[:space:]])failed$|Traceback' "$LOG"; then
    echo "asv smoke: a benchmark failed (asv exit status $status)" >&2
    exit 1
fi

echo "asv smoke: every benchmark ran"
