#!/usr/bin/env bash
# Create .bench-venv/: a separate environment holding the *reference* implementation
# (PyPI `m-phate`) for benchmarks/bench_reference.py. It is never a dependency of mphate
# and its source is never read or copied; we only run its public API in a subprocess.
#
# m-phate 0.1.6 imports today only with numpy<2 and its plotting needs matplotlib<3.9.
# Usage:  bash benchmarks/reference_env.sh        (idempotent; writes .bench-venv/versions.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${BENCH_VENV:-.bench-venv}
PY=${PYTHON:-python3}

test -x "$VENV/bin/python" || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "m-phate" "numpy<2" "matplotlib<3.9"
# smoke: the reference must import and run on a tiny multislice trace
"$VENV/bin/python" - <<'PY'
import numpy as np, m_phate
rng = np.random.default_rng(0)
x = rng.normal(size=(30, 20, 10)).cumsum(axis=0)
y = m_phate.M_PHATE(verbose=0, n_jobs=1).fit_transform(x)
assert y.shape == (30 * 20, 2), y.shape
print("reference OK", y.shape)
PY
"$VENV/bin/python" -m pip freeze > "$VENV/versions.txt"
"$VENV/bin/python" -c "import sys; print('python', sys.version.split()[0])" >> "$VENV/versions.txt"
grep -iE '^(m-phate|phate|graphtools|numpy|scipy|scikit-learn|pygsp|tasklogger|s-gd2|matplotlib|python)[= ]' "$VENV/versions.txt"
