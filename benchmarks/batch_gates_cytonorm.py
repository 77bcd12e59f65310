"""CytoNorm (cytonormpy) on the Gates CyTOF controls, scored like batch_gates.py.

Optional comparison: cytonormpy is a benchmark-only dependency and lives in its
own virtual environment, never in sc_neuronedit's requirements.

    bash benchmarks/envs/cytonorm.sh                       # creates .venv-cytonorm
    SC_NEURONEDIT_DATA_DIR=/path/to/data \
        .venv-cytonorm/bin/python benchmarks/batch_gates_cytonorm.py   # seeds 0 1 2

Setup (CytoNorm's defaults where the issue does not say otherwise): trained on
the volunteer-1 (``reference``) files only; FlowSOM (cytonormpy's 10x10 SOM,
``--n-clusters`` metaclusters) on the 37 scored marker channels, which are also
the normalised ones; 99 quantiles per batch, cluster and marker; goal = mean of
the batches' quantiles (CytoNorm's "mean" goal); splines applied to all cells.
cytonormpy works on the arcsinh(x/5) layer made exactly as in batch_gates.py, so
its output is scored as it comes.

Two rows: cytonormpy's default splines, which extrapolate linearly beyond the
training quantiles (a few volunteer-2 cells land at arcsinh values of 40-250;
the data end near 8; the per-seed maximum is printed), and splines pinned
at 0 and 8 (``limits=[0, 8]``, as in cytonormpy's own tests). A metacluster
with fewer than 50 reference cells in a batch gets an identity spline there
(cytonormpy's ``min_cells``); cytonormpy warns when that happens.

Prints a table and writes benchmarks/results/batch_gates_cytonorm.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

import anndata as ad
import cytonormpy as cnp
import numpy as np
import pandas as pd

import sc_neuronedit as sne

sys.path.insert(0, str(Path(__file__).parent))  # batch_gates.py: same markers, same scores
from batch_gates import marker_mask, scores, write_table


def cytonorm(adata: ad.AnnData, channels: list[str], n_clusters: int, seed: int,
             limits: list[float] | None = None) -> np.ndarray:
    """``adata.layers["arcsinh"]`` of all cells after CytoNorm trained on the reference files."""
    # a fresh object: cytonormpy writes its result into a layer of the AnnData it is given
    obs = adata.obs[["batch", "file_name"]].copy()
    obs["reference"] = np.where(adata.obs["reference"], "ref", "other")  # the labels its docs use
    adata = ad.AnnData(obs=obs, var=pd.DataFrame(index=adata.var_names),
                       layers={"arcsinh": adata.layers["arcsinh"].copy()})
    cn = cnp.CytoNorm()
    # No transformer: the layer already is arcsinh(x/5) (CytoNorm's cytofTransform), in float32
    # like cnp.AsinhTransformer's output, so results match raw input + that transformer (checked
    # to 2e-7), except that far-extrapolated cells (module docstring) no longer overflow in the
    # inverse sinh to inf/NaN scores.
    cn.add_clusterer(cnp.FlowSOM(n_clusters=n_clusters, seed=seed))
    cn.run_anndata_setup(adata, layer="arcsinh", reference_column="reference", reference_value="ref",
                         batch_column="batch", sample_identifier_column="file_name",
                         channels=channels, key_added="cytonorm")
    cn.run_clustering(n_cells=None)  # the SOM sees all 4000 reference cells
    cn.calculate_quantiles(n_quantiles=99)
    cn.calculate_splines(goal="batch_mean", limits=limits)
    with contextlib.redirect_stdout(io.StringIO()):  # one "normalized file" line per file
        cn.normalize_data(n_jobs=2)
    return adata.layers["cytonorm"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="FlowSOM seeds")
    p.add_argument("--n-clusters", type=int, default=5, help="FlowSOM metaclusters")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "batch_gates_cytonorm.md"))
    args = p.parse_args()

    adata = ad.read_h5ad(sne.datasets.data_dir() / "cytonorm_gates.h5ad")
    sne.pp.arcsinh(adata, 5)
    markers = marker_mask(adata)
    batch, ref = adata.obs["batch"].to_numpy().astype(str), adata.obs["reference"].to_numpy()
    before = adata.layers["arcsinh"][:, markers]
    rows = [dict(method="uncorrected", seed=0, **scores(before, batch, ref, before))]
    channels = list(adata.var_names[markers])
    for limits in (None, [0.0, 8.0]):
        label = (f"CytoNorm (cytonormpy {cnp.__version__}, {args.n_clusters} FlowSOM clusters"
                 + (f", spline limits {limits[0]:g}–{limits[1]:g})" if limits else ")"))
        for seed in args.seeds:
            X = cytonorm(adata, channels, args.n_clusters, seed, limits)[:, markers]
            rows.append(dict(method=label, seed=seed, max=float(X.max()),
                             **scores(X, batch, ref, before)))
            print(rows[-1], flush=True)

    cols = ["batch_emd", "spread_gap", "donor_gap", "mad_change"]
    agg = pd.DataFrame(rows).groupby("method", sort=False)[cols].agg(["mean", "std"])
    header = (f"`.venv-cytonorm/bin/python benchmarks/batch_gates_cytonorm.py` — {int(markers.sum())} "
              "marker channels, volunteer 2 scored, CytoNorm trained on volunteer 1 only (goal: mean "
              f"of the batches' quantiles, 99 quantiles); FlowSOM seeds {args.seeds}. Same scores as "
              "batch_gates.md.")
    write_table(agg, ["# Gates reference-sample batch correction: CytoNorm", "", header, ""], args.out)


if __name__ == "__main__":
    main()
