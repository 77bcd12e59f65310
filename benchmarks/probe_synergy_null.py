"""Which tests made the within-population synergy family's false calls, and does the
distortion term see them?

Rebuilds the cells, populations and model of ``benchmarks/synergy_populations.py`` and
reruns null replicates 10, 18 and 3 (gamma = 0: no interaction) within populations. For the
six smallest p-values *without* the pipeline's distortion term it prints the estimate, the
SE and p without and with the term, the reruns' mean minus the prediction (the bootstrap's
own bias, which it cannot correct) and the 4 control -> control shifts of that statistic
(``identity_shifts``; in the estimate's direction: observed minus predicted expects minus
the shift).

With ``--pooled``, instead: the 21 null replicates whose pooled mean test (today's test, the
wide tables) called a synergy in the 600-replicate run of ``benchmarks/synergy_populations.py``
are rerun pooled, printing each one's smallest-p feature and how often each feature is it.

    SC_NEURONEDIT_DATA_DIR=/work/shared/data python benchmarks/probe_synergy_null.py [--pooled]
"""

import sys
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import synergy_populations as sp
import torch

import sc_neuronedit as sne
import sc_neuronedit.tl._combination_run as combination
from sc_neuronedit._synergy import grouped_statistics, population_tests

#: Null replicates with pooled mean p < 0.05 in benchmarks/results/synergy_populations.md's run.
POOLED_FALSE_CALLS = (13, 19, 48, 62, 76, 86, 89, 118, 123, 184, 186, 193, 206, 213, 218, 231,
                      251, 260, 280, 281, 282)


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
    if "--pooled" in sys.argv:
        return pooled(adata, offset, n, model)
    seen = {}

    def spy(*args, **kwargs):  # the synergy call's own inputs to its tests
        seen.update(args=args, kwargs=kwargs)
        return population_tests(*args, **kwargs)

    combination.population_tests = spy
    for r in (10, 18, 3):
        null_synergy(adata, offset, n, model, r, population_key="population")
        args, kwargs = seen["args"], dict(seen["kwargs"])
        shifts = np.asarray(kwargs.pop("identity_shifts"))
        with_term = population_tests(*args, identity_shifts=shifts, **kwargs)
        without = population_tests(*args, **kwargs)
        predicted, predicted_labels, replicates = args[2], args[3], np.asarray(args[4])
        bias = replicates.mean(0) - grouped_statistics(predicted, predicted_labels,
                                                       kwargs["populations"])
        table = without[["population", "feature", "statistic", "n_observed", "estimate"]].copy()
        table["se"], table["p"] = without["se"], without["pvalue"]
        table["se_with"], table["p_with"] = with_term["se"], with_term["pvalue"]
        table["boot_bias"] = bias.ravel()
        for k, shift in enumerate(shifts):
            table[f"shift{k}"] = -shift.ravel()
        print(f"null replicate {r}: smallest p-values without the distortion term")
        print(table.sort_values("p").head(6).round(4).to_string(), flush=True)


def null_synergy(adata, offset, n, model, r, population_key=None):
    """``sne.tl.synergy`` on null replicate ``r`` of the benchmark (its cells, 30 reruns)."""
    cond = np.full(adata.n_obs, "unused", dtype=object)
    for v, key, g in zip(("ctrl", "A", "B", "AB"), ("ctrl", "A", "B", "AB today 0"),
                         sp.split(n, 1000, r, 0)):
        cond[offset[key] + g] = v
    adata.obs["cond"] = pd.Categorical(cond, categories=["ctrl", "A", "B", "AB", "unused"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sne.tl.synergy(adata, "cond", control="ctrl", combinations={"AB": ("A", "B")},
                       model=model, n_resamples=30, random_state=r, progress=False,
                       key_added="syn", population_key=population_key)
    return adata.uns["syn"]


def pooled(adata, offset, n, model):
    rows = []
    for r in POOLED_FALSE_CALLS:
        res = null_synergy(adata, offset, n, model, r)
        p = res["pvalue"].loc["AB"]
        f = p.idxmin()
        rows.append(dict(rep=r, feature=f, p=p[f], shift=res["mean_shift"].loc["AB", f],
                         se=res["se"].loc["AB", f], route_gap=res["route_gap"].loc["AB", f]))
    table = pd.DataFrame(rows)
    print(table.round(4).to_string(), "\n", table["feature"].value_counts().to_string(), flush=True)


if __name__ == "__main__":
    main()
