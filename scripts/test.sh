#!/usr/bin/env bash
# Sets up everything (idempotent, see setup.sh) and runs the whole test suite on CPU.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k parity -x`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
cd "$ROOT"
set +e
python -m pytest test -ra "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: counted as a failure" >&2
  exit 1
fi
exit "$rc"
