#!/usr/bin/env bash
# Optional venv for benchmarks/batch_gates_cytonorm.py (CytoNorm via cytonormpy).
# cytonormpy is a benchmark-only dependency, never a runtime one of sc_neuronedit.
#
# Licences (as installed: wheels' METADATA and shipped LICENSE files):
#   cytonormpy 1.0.2  the wheel ships a GPL-3.0 LICENSE file, its PyPI classifier says MIT;
#                     treat it as GPL-3.0 until upstream resolves the mismatch
#   flowsom 0.2.2     GPL-3.0 (FlowSOM Python, saeyslab)
#   igraph 1.0.0      GPL (python-igraph: GPL-2.0-or-later), via flowsom
#   pytometry, readfcs Apache-2.0; flowio, flowutils, mudata, numba BSD; minisom, loguru MIT
# GPL code is imported only by benchmarks/batch_gates_cytonorm.py, in this venv;
# sc_neuronedit (BSD-3-Clause) neither imports nor depends on any of it.
#
#     bash benchmarks/envs/cytonorm.sh [VENV]     # default: .venv-cytonorm in the repo root
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${1:-.venv-cytonorm}"

python3 -m venv "$venv"
. "$venv/bin/activate"
python -m pip install --quiet --upgrade pip
# torch first and pinned, as in .ci/run: an unpinned torch would pull a multi-GB CUDA build;
# the constraints file then stops cytonormpy's dependencies from upgrading it.
python -m pip install --quiet torch==2.13.0
python -m pip install --quiet -c benchmarks/envs/constraints.txt cytonormpy==1.0.2 -e .
