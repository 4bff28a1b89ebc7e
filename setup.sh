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
echo "Installing the demo page's web runtime (LiteRT.js from the npm registry, served locally) ..."
if command -v npm > /dev/null; then
  (cd demo && npm ci --no-audit --no-fund --loglevel=error 2> >(grep -v "Unknown user config" >&2))
else
  echo "warning: npm not found; 'ondevice-rec demo' and its browser test need Node.js and npm" >&2
fi
# The browser test drives Debian's Chromium (no browser download by a test tool).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "Installing Debian's chromium for the demo's browser test ..."
    apt-get install -y -qq --no-install-recommends chromium > /dev/null ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium > /dev/null; }
  else
    echo "warning: /usr/bin/chromium missing (apt-get install chromium); the browser test will be skipped" >&2
  fi
fi
# The distributed engine (pipeline/flink.py): Flink from PyPI files, Beam's Flink runner from Maven Central, into
# the cache folder (~/.cache/ondevice-rec); a second run only checks it, offline. Without Java 17 or Maven the
# rest still works on the local DirectRunner.
echo "Preparing the Flink engine (cached after the first time) ..."
.venv/bin/ondevice-rec flink install ||
  echo "warning: the Flink engine is not prepared (see above); runs use the local DirectRunner" >&2
.venv/bin/ondevice-rec --help > /dev/null
echo "Ready: .venv/bin/ondevice-rec --help"
