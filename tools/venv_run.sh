#!/usr/bin/env bash
# Runs a command inside the project's virtual environment, creating and installing it first
# when needed (a fresh machine needs only Python 3.11). Re-installs when setup.py changes.
#   bash tools/venv_run.sh python -m kp_tf.train --dataset=synthetic
#   bash tools/venv_run.sh python -m pytest -q -n 2 --dist loadfile tests
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${KP_TF_VENV:-$repo/.venv}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
stamp="$venv/.kp_tf_installed"
want="$(cat "$repo/setup.py" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Setting up $venv (first run only) ..." >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  # setuptools' notes on editable installs are warnings in pip's build process: not for users
  PYTHONWARNINGS=ignore "$venv/bin/python" -m pip install -q -e "$repo[test]" >&2
  echo "$want" > "$stamp"
fi
cd "$repo"
export PATH="$venv/bin:$PATH"
exec "$@"
