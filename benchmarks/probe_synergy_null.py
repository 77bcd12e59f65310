"""Which tests make the within-population synergy family's false calls?

Rebuilds the cells, populations and model of ``benchmarks/synergy_populations.py`` and
reruns null replicates 10 and 18 (gamma = 0: no interaction) within populations, printing
the six smallest p-values of each ``tests`` table, with ``nonnegative`` "clip" (default) and
"off" for replicate 10.

    SC_NEURONEDIT_DATA_DIR=/work/shared/data python benchmarks/probe_synergy_null.py
"""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import synergy_populations as sp
import torch

import sc_neuronedit as sne

COLUMNS = ["population", "feature", "statistic", "n_observed", "n_predicted", "estimate", "se", "pvalue"]


def main():
    torch.set_num_threads(1)
    full = ad.read_h5ad(sne.datasets.data_dir() / "bodenmiller_bcrxl.h5ad")
    ref = full[full.obs["condition"] == "Ref"].copy()
    sne.pp.arcsinh(ref, 5)
    names, X0 = ref.var_names, np.asarray(ref.layers["arcsinh"], dtype=np.float32)
    vers = sp.versions(X0, names, sp.populations(X0, names), [0.0])
    n = len(X0)
    adata = ad.AnnData(np.vstack(list(vers.values())).astype(np.float32), var=ref.var.copy())
    adata.obs_names = [f"{v}|{i}" for v in vers for i in range(n)]
    offset = {v: i * n for i, v in enumerate(vers)}
    type_markers = list(ref.var_names[ref.var["marker_class"] == "type"])
    sne.pp.populations(ref, type_markers, 6, layer="arcsinh", random_state=0)
    adata.obs["population"] = pd.Categorical(
        np.tile(ref.obs["population"].astype(str).to_numpy(), len(vers)))
    model = sne.NeuronEditor(adata).train(cells=np.isin(np.arange(adata.n_obs) // n, [0, 1, 2]),
                                         random_state=0, progress=False)
    cd7 = X0[:, names.get_loc("CD7")]
    print(f"CD7: min {cd7.min():.3f}, share <= 0.05: {(cd7 <= 0.05).mean():.3f}")
    for r, nonnegative in ((10, "clip"), (10, "off"), (18, "clip")):
        cond = np.full(adata.n_obs, "unused", dtype=object)
        for v, key, g in zip(("ctrl", "A", "B", "AB"), ("ctrl", "A", "B", "AB today 0"),
                             sp.split(n, 1000, r, 0)):
            cond[offset[key] + g] = v
        adata.obs["cond"] = pd.Categorical(cond, categories=["ctrl", "A", "B", "AB", "unused"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sne.tl.synergy(adata, "cond", control="ctrl", combinations={"AB": ("A", "B")}, model=model,
                           n_resamples=30, random_state=r, progress=False, key_added="syn",
                           population_key="population", nonnegative=nonnegative)
        tests = adata.uns["syn"]["tests"]
        print(f"null replicate {r}, nonnegative={nonnegative!r}")
        print(tests.sort_values("pvalue").head(6)[COLUMNS].to_string(), flush=True)


if __name__ == "__main__":
    main()
