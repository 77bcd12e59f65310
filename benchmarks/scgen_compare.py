"""scGen against neuron editing on held-out Kang cell types: time to a trained model
and accuracy, in one run on this machine.

scGen (GPL-3) runs in its own environment (``benchmarks/envs/scgen-requirements.txt``,
torch pinned as here) through ``benchmarks/scgen_run.py``, on the Kang data
exported to an .h5ad; its prediction is scored here with the same metrics and
DEGs as ``benchmarks/kang_holdout.py``. Neuron editing trains with the package
defaults on the same cells and seed.

    SC_NEURONEDIT_DATA_DIR=/work/shared/data python benchmarks/scgen_compare.py \
        --scgen-python /work/scgen-venv/bin/python --types CD4T

Prints a table and writes benchmarks/results/scgen_compare.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from kang_holdout import COND, CTRL, GROUP, STIM, score

import sc_neuronedit as sne
from sc_neuronedit import metrics

HERE = Path(__file__).parent


def export_kang(adata, path: Path) -> None:
    """The Kang matrix and the two obs columns scGen needs, readable by anndata 0.9."""
    ad.AnnData(X=adata.X.copy(), obs=adata.obs[[COND, GROUP]].astype(str),
               var=adata.var[[]]).write_h5ad(path)


def run_scgen(python: str, h5ad: Path, cell_type: str, out: Path, *, max_epochs: int,
              seed: int) -> tuple[dict, np.ndarray]:
    """Train and predict with scGen in its environment: its timing and prediction."""
    subprocess.run([python, str(HERE / "scgen_run.py"), str(h5ad), cell_type, str(out),
                    "--max-epochs", str(max_epochs), "--seed", str(seed)], check=True)
    return json.loads((out / "timing.json").read_text()), np.load(out / "pred.npy")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scgen-python", required=True, help="python of the scGen environment")
    p.add_argument("--types", nargs="*", default=["CD4T"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=int, default=100, help="scGen's (its tutorial: 100)")
    p.add_argument("--out", default=str(HERE / "results" / "scgen_compare.md"))
    args = p.parse_args()
    adata = sne.datasets.kang()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kang.h5ad"
        export_kang(adata, path)
        for T in args.types:
            t_mask = (adata.obs[GROUP] == T).to_numpy()
            degs = metrics.top_degs(adata[t_mask], COND, STIM, CTRL, n_genes=100)
            train = ~(t_mask & (adata.obs[COND] == STIM).to_numpy())
            timing, scgen_pred = run_scgen(args.scgen_python, path, T, Path(tmp) / T,
                                           max_epochs=args.max_epochs, seed=args.seed)
            start = time.perf_counter()
            model = sne.NeuronEditor(adata).train(cells=train, random_state=args.seed, progress=False)
            seconds = time.perf_counter() - start
            pred = sne.tl.predict_perturbation(
                adata, COND, control=CTRL, perturbed=STIM, groupby=GROUP, predict_for=T,
                model=model, random_state=args.seed, inplace=False, progress=False)
            preds = {"scGen": scgen_pred, "neuron edit (default)": np.asarray(pred.X)}
            runs = {"scGen": (timing["seconds"], timing["epochs"]),
                    "neuron edit (default)": (seconds, len(model.history.train_loss))}
            for r in score(adata, T, preds, degs):
                s, ep = runs[r["method"]]
                rows.append({**r, "train s": s, "epochs": ep, "s/epoch": s / ep,
                             "train cells/s": int(train.sum()) * ep / s})
                print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rows[-1].items()},
                      flush=True)
    df = pd.DataFrame(rows)
    cols = ["cell_type", "method", "train s", "epochs", "s/epoch", "train cells/s",
            "r2_all", "r2_deg", "energy", "energy_floor"]
    lines = [
        "# scGen vs neuron editing: time to a trained model and accuracy", "",
        f"`python benchmarks/scgen_compare.py --scgen-python <venv>/bin/python --types "
        f"{' '.join(args.types)}` — seed {args.seed}, {torch.get_num_threads()} torch threads, CPU. "
        "scGen 2.1.0 with its tutorial settings (batch 32, ≤ "
        f"{args.max_epochs} epochs, early stopping patience 25) in its own environment; neuron "
        "editing with the package defaults. Training time is wall clock of the `train` call; "
        "metrics as in `kang_holdout.py` (r² of mean expression, all genes and top-100 DEGs; "
        "energy distance in PCA-50, `energy_floor` = two halves of the real cells).", "",
        "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
    ]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(f"{r[c]:,.3f}" if isinstance(r[c], float) else str(r[c])
                                       for c in cols) + " |")
    for T in args.types:
        sub = df[df.cell_type == T].set_index("method")
        ratio = sub.loc["scGen", "train s"] / sub.loc["neuron edit (default)", "train s"]
        lines.append(f"\n{T}: neuron editing trains {ratio:.1f}x faster than scGen.")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
