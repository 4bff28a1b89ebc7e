#!/usr/bin/env bash
# One-command set-up: creates .venv with the pinned TFX 1.16 stack (constraints.txt), then installs this
# project in editable mode with its test extras. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version' 
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# tfx 1.16 declares python<3.11, but every compiled dependency has a cp311 wheel and the stack runs on 3.11.
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check --ignore-requires-python -c constraints.txt)
echo "Installing the pinned TFX 1.16 stack (a few minutes on a cold cache) ..."
"${PIP[@]}" "tfx[kfp]==1.16.0" 2> >(grep -v "^WARNING: Location" >&2)
echo "Installing ondevice-rec ..."
"${PIP[@]}" -e ".[test]" 2> >(grep -v "^WARNING: Location" >&2)
.venv/bin/ondevice-rec --help > /dev/null
echo "Ready: .venv/bin/ondevice-rec --help"
