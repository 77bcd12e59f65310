#!/usr/bin/env bash
# Optional venv for benchmarks/scgen_compare.py and throughput.py --scgen-python (scGen timing).
# scGen (PyPI scgen 2.1.0) is GPL-3.0 and pulls scvi-tools: a benchmark-only tool, never a
# dependency of sc_neuronedit (BSD-3-Clause), and this venv does not contain sc_neuronedit:
# data reach it as an .h5ad file (benchmarks/scgen_run.py runs inside it).
# Pins and why each is needed: benchmarks/envs/scgen-requirements.txt (scgen 2.1.0 needs
# scvi-tools 0.19, hence anndata 0.9 and pytorch-lightning 1.7).
#
#     bash benchmarks/envs/scgen.sh [VENV]     # default: .venv-scgen in the repo root
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${1:-.venv-scgen}"

python3 -m venv "$venv"
# Keep the venv's bundled pip (< 24.1): newer pip rejects pytorch-lightning 1.7.7's metadata.
"$venv/bin/python" -m pip install --quiet "pip<24.1"
# torch first and pinned, as in .ci/run; the constraints file stops the rest from replacing it.
"$venv/bin/python" -m pip install --quiet torch==2.13.0
"$venv/bin/python" -m pip install --quiet -c benchmarks/envs/constraints.txt \
    -r benchmarks/envs/scgen-requirements.txt
"$venv/bin/python" -c "import scgen, scvi; print('scgen', scgen.__version__, 'scvi-tools', scvi.__version__)"
