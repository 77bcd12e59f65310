"""Choose batch_correct's output options on reference cells alone (Gates CyTOF).

The held-out donor (volunteer 2) is never looked at. Within the reference
(volunteer 1), cells are split by a lineage gate into T cells (CD3 > 2 in
arcsinh units, ~25 %) and the rest. Each fold learns the batch edits from
one population's reference cells and scores the other population across
batches: a transfer to cells the edits never saw, as the held-out donor is.
Scores as in ``batch_gates.py`` (max-pair batch EMD averaged over markers,
relative MAD change).

    python benchmarks/batch_select.py                 # seeds 0 1
    python benchmarks/batch_select.py --seeds 0 --out /tmp/select.md

Prints a table and writes benchmarks/results/batch_select.md.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from batch_gates import marker_mask, per_marker

import sc_neuronedit as sne

OPTIONS = dict(decode=["edited_residual", "plain"], calibrate=[False, True])
MODELS = {"512-256-64 (default)": None, "128-64-16": dict(hidden=(128, 64), n_latent=16)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "batch_select.md"))
    args = p.parse_args()

    adata = ad.read_h5ad(sne.datasets.data_dir() / "cytonorm_gates.h5ad")
    sne.pp.arcsinh(adata, 5)
    markers = marker_mask(adata)
    adata.var["marker_channel"] = markers
    adata = adata[adata.obs["reference"].to_numpy()].copy()  # volunteer 2 leaves here
    X = adata.layers["arcsinh"][:, markers]
    batch = adata.obs["batch"].to_numpy().astype(str)
    t_cell = X[:, list(adata.var["marker"][markers]).index("CD3")] > 2
    rows = []
    for seed, (model_name, model_kwargs), (learn, _scored) in itertools.product(
        args.seeds, MODELS.items(), [("T cells", "other cells"), ("other cells", "T cells")]
    ):
        adata.obs["learn"] = t_cell if learn == "T cells" else ~t_cell
        scored = ~adata.obs["learn"].to_numpy()
        for values in itertools.product(*OPTIONS.values()):
            opts = dict(zip(OPTIONS, values))
            sne.tl.batch_correct(adata, "batch", reference_key="learn", reference_value=True,
                                 layer="arcsinh", mask_var="marker_channel", random_state=seed,
                                 model_kwargs=model_kwargs, progress=False, **opts)
            Y = adata.layers["batch_corrected"][:, markers]
            emd, mad = per_marker(Y, batch, ~scored, X)
            rows.append(dict(seed=seed, model=model_name, learn_from=learn, **opts,
                             batch_emd=float(emd.mean()), mad_change=float(mad.mean())))
            print(rows[-1], flush=True)
    before = [per_marker(X, batch, t_cell == (s == "T cells"), X)[0].mean()
              for s in ("other cells", "T cells")]
    df = pd.DataFrame(rows)
    agg = (df.groupby(["model", *OPTIONS], sort=False)[["batch_emd", "mad_change"]]
           .mean().sort_values("batch_emd"))
    lines = ["# Choosing batch_correct's options on reference cells only", "",
             f"`python benchmarks/batch_select.py` — Gates volunteer 1 only; edits learned on one "
             f"population (T cells / other cells), scored on the other; mean over both folds and "
             f"seeds {args.seeds}. Uncorrected batch EMD of the scored population: T cells "
             f"{before[1]:.3f}, other cells {before[0]:.3f} (mean {np.mean(before):.3f}).", "",
             "| model | decode | calibrate | batch EMD ↓ | MAD change ↓ |", "|---|---|---|---|---|"]
    lines += [f"| {m} | {d} | {c} | {r.batch_emd:.3f} | {r.mad_change:.3f} |"
              for (m, d, c), r in agg.iterrows()]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
