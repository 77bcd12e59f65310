"""Why a held-out Kang cell type gains or loses with the level-binned residual edit.

For each held-out type T (one seed): the autoencoder is trained as in
``kang_holdout.py`` (without the stimulated cells of T), the edit is learned on
the other types with ``residual_bins=1`` (pooled) and with the default, and both
predictions are scored against the real stimulated T cells. Beside the scores:

- ``abs r, T / source``: the mean absolute reconstruction residual of T's control
  cells over that of the source cells (all genes): how much worse the
  autoencoder reconstructs T than the cells the residual edit was learned on;
- ``outside (pooled / binned)``: the share of T's residuals (cell x gene, DEGs
  of T) outside the source residual range the edit was learned on: the pooled
  range, or the range of the cell's own level bin. There the edit extrapolates
  with a constant shift, and the cell sits at the extreme quantile of its bin;
- ``top bin``: the share of T's (cell, DEG) values whose decoded level falls in
  the highest source bin (1/K on average for the source cells);
- ``var ratio`` (DEGs): median over T's DEGs of predicted / real variance;
- ``DEG mean``: the mean over T's DEGs and cells of the real stimulated cells,
  of the decoded edit ``decode(z')`` alone, and of the two predictions: what
  the residual edit adds to the decoded edit's level.

    python benchmarks/kang_level_bins.py --types Dendritic B CD4T --seed 0

Writes benchmarks/results/kang_level_bins.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import sc_neuronedit as sne
from sc_neuronedit import metrics
from sc_neuronedit._learning import RESIDUAL_BINS
from sc_neuronedit._residual import _bins

COND, GROUP, CTRL, STIM = "condition", "cell_type", "control", "stimulated"


def diagnose(adata, T, seed):
    ct, cond = adata.obs[GROUP].to_numpy(), adata.obs[COND].to_numpy()
    ctrl_T, real_T = (ct == T) & (cond == CTRL), (ct == T) & (cond == STIM)
    src, tgt = (ct != T) & (cond == CTRL), (ct != T) & (cond == STIM)
    degs = adata.var_names.get_indexer(metrics.top_degs(adata[ct == T], COND, STIM, CTRL, n_genes=100))
    model = sne.NeuronEditor(adata).train(cells=~real_T, random_state=seed, progress=False)
    x_T, real, x_src = adata.X[ctrl_T].toarray(), adata.X[real_T].toarray(), adata.X[src].toarray()
    d_T = model.decode(model.encode(ctrl_T))
    r_T, r_src = x_T - d_T, x_src - model.decode(model.encode(src))
    row = {"cell type": T, "control cells": int(ctrl_T.sum()),
           "abs r, T / source": float(np.abs(r_T).mean() / np.abs(r_src).mean())}
    for k in (1, RESIDUAL_BINS):
        edit = model.learn_edit(src, tgt, groupby=GROUP, residual_bins=k)
        pred = model.apply_edit(ctrl_T, edit)
        if k == 1:
            decoded_edit = model.decode(edit.neurons.apply(torch.from_numpy(model.encode(ctrl_T))).numpy())
            row.update({"DEG mean real": float(real[:, degs].mean()),
                        "DEG mean decode(z')": float(decoded_edit[:, degs].mean())})
        res = edit.residual
        s_bin = np.zeros_like(r_T, dtype=np.int64).T if k == 1 else \
            _bins(res.source_edges, torch.from_numpy(d_T)).numpy()
        knots = res.source_knots.numpy()  # (k, q, genes)
        genes = np.arange(r_T.shape[1])[:, None]
        lo, hi = knots[s_bin, 0, genes].T, knots[s_bin, -1, genes].T
        outside = ((r_T < lo) | (r_T > hi))[:, degs].mean()
        name = "pooled" if k == 1 else "binned"
        energy, floor = metrics.pca_energy_distance(pred, real, x_T)
        row.update({
            f"energy {name}": energy, f"r2 DEG {name}": metrics.r2_means(pred, real, degs),
            f"r2 var DEG {name}": metrics.r2_variances(pred, real, degs),
            f"outside {name}": float(outside),
            f"var ratio {name}": float(np.median(pred[:, degs].var(0)
                                                 / np.maximum(real[:, degs].var(0), 1e-12))),
            f"DEG mean {name}": float(pred[:, degs].mean()),
            "energy floor": floor,
        })
        if k > 1:
            row["top bin"] = float((s_bin.T[:, degs] == k - 1).mean())
            row["pooled genes"] = int(res.pooled.sum())
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--types", nargs="*", default=["Dendritic", "B", "CD4T"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "kang_level_bins.md"))
    args = p.parse_args()
    adata = sne.datasets.kang()
    rows = []
    for T in args.types:
        rows.append(diagnose(adata, T, args.seed))
        print(rows[-1], flush=True)
    cols = list(rows[0])
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
    text = "\n".join([
        "# Level-binned residual edit: per held-out type diagnosis (Kang)", "",
        f"`python benchmarks/kang_level_bins.py --types {' '.join(args.types)} --seed {args.seed}`; "
        f"pooled = `residual_bins=1`, binned = the default `residual_bins={RESIDUAL_BINS}`.", "",
        "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
        *("| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows), "",
    ])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
