"""Calibration of the per-population synergy family across null settings, and its power.

The family (``summary["family_pvalue"]``: Holm over every population x feature x statistic
test of ``sne.tl.synergy(..., population_key=...)``) is run on null designs that vary what
its calibration could depend on: the number of k-means populations on the type markers
(``--k``, from ``sne.pp.populations`` or a plain scikit-learn ``KMeans`` as a user would fit
it, ``--clusters``), the cells per condition (``--n-cells``), the pipeline's reruns
(``--n-resamples``) and which populations the single drugs act on (``--targets``: ``BT`` =
A on B cells, B on T cells as in ``benchmarks/synergy_populations.py``; ``monoNK`` = A on
monocytes (CD14 > 1.5 or CD33 > 2), B on NK cells (CD7 > 2.5, CD3 < 1); B and T cells as in
``sc_neuronedit.datasets._semisynthetic.populations``).

Null replicate: four groups of ``--n-cells`` Ref cells (disjoint when 4 n fit in the 7,137
Ref cells, else each drawn with replacement, independently: i.i.d. draws from the same
empirical distribution are as valid a null), transformed into control, A, B and the
composition B(A(x)); one ``sne.tl.synergy`` call within populations. Each replicate's family
is scored twice from the same call: as the package computes it (a quantile is tested only
where ``MIN_TAIL_CELLS`` cells lie beyond it in every condition) and with every row tested
(the rule before; the arrays ``population_tests`` was called with are reused, nothing is
rerun). A false positive: family p < 0.05.

Power replicate (``--power-reps`` per gamma): the combination gets the interaction of
``benchmarks/synergy_populations.py``'s design ``today`` (T cells pPlcg2 += 0.5 gamma); the
family run and a pooled run (no ``population_key``: the pooled mean test, the wide tables'
p, Bonferroni over features). A detection: the summary p < 0.05 and pPlcg2 among the tests
with q < 0.05 (any population and statistic for the family).

One autoencoder per setting, trained once on every Ref cell's control, A and B versions.

    SC_NEURONEDIT_DATA_DIR=/work/shared/data OMP_NUM_THREADS=1 python \\
        benchmarks/synergy_null_settings.py --clusters sklearn --k 10 --n-cells 1500 \\
        --n-resamples 20 --targets BT --null-reps 100 --power-reps 10 --dump /tmp/s.pkl
    python benchmarks/synergy_null_settings.py --report /tmp/s1.pkl /tmp/s2.pkl ...
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scipy import stats

import sc_neuronedit as sne
import sc_neuronedit.tl._combination_run as combination_module
from sc_neuronedit._synergy import holm, population_tests
from sc_neuronedit.datasets._semisynthetic import combination, drug_a, drug_b, populations

sys.path.insert(0, str(Path(__file__).parent))
from synergy_calibration import collect, ref_cells, split, wilson  # noqa: E402  (same splits, same CI)

ALPHA = 0.05
FEATURE = "pPlcg2"  # the interaction's marker
TARGETS = {"BT": ("B", "T"), "monoNK": ("mono", "NK")}


def gate(X, names):
    """B, T (as the semi-synthetic data's gate), then monocytes and NK cells among the rest."""
    out = populations(X, names).astype(object)
    col = {m: X[:, names.get_loc(m)] for m in ("CD14", "CD33", "CD7", "CD3")}
    rest = out == "other"
    mono = rest & ((col["CD14"] > 1.5) | (col["CD33"] > 2))
    out[mono] = "mono"
    out[rest & ~mono & (col["CD7"] > 2.5) & (col["CD3"] < 1)] = "NK"
    return out.astype(str)


def clusters(X, args) -> np.ndarray:
    if args.clusters == "pp":
        holder = ad.AnnData(X)
        sne.pp.populations(holder, np.ones(X.shape[1], bool), args.k, random_state=args.seed)
        return holder.obs["population"].astype(str).to_numpy()
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=args.k, random_state=args.seed).fit_predict(X).astype(str)


class Family:
    """Captures the arrays of the synergy call's own ``population_tests`` call, so that the
    family can also be scored with every row tested, without rerunning anything."""

    def __init__(self):
        self.seen = None

    def __call__(self, *args, **kwargs):
        self.seen = args, kwargs
        return population_tests(*args, **kwargs)

    def every_row(self, tests):
        args, kwargs = self.seen
        out = population_tests(*args, **{**kwargs, "cells": None})
        # the pooled mean rows are the wide tables' test, as in the call itself
        pooled = (out["population"] == "all") & (out["statistic"] == "mean")
        out.loc[pooled, "pvalue"] = tests.loc[pooled.to_numpy(), "pvalue"].to_numpy()
        return out


def summarise(tests):
    """Holm family p over the tested rows; whether pPlcg2 has a BH q < 0.05; the smallest-p row."""
    fam = tests[tests["pvalue"].notna()]
    q = stats.false_discovery_control(fam["pvalue"].to_numpy())
    p = float(holm(fam["pvalue"].to_numpy()).min())
    first = fam.loc[fam["pvalue"].idxmin()]
    return {"p": p, "n_tests": len(fam), "found": bool(p < ALPHA and np.any(
        q[(fam["feature"] == FEATURE).to_numpy()] < ALPHA)),
        "first": {k: first[k] for k in ("population", "feature", "statistic", "n_observed",
                                        "estimate", "se", "pvalue")}}


def replicate(job, s):
    gamma, r = job
    args, rep = s["args"], s["rep"]
    n = args.n_cells
    if 4 * n <= s["n_ref"]:
        groups = split(s["n_ref"], n, r, args.seed)
    else:
        groups = np.random.default_rng([args.seed, r]).integers(0, s["n_ref"], (4, n))
    keys = ("ctrl", "A", "B", f"AB {gamma:g}")
    rep.X[:] = np.vstack([s["versions"][k][g] for k, g in zip(keys, groups)])
    rep.obs["population"] = pd.Categorical(s["labels"][groups.ravel()])
    out = {"gamma": gamma, "rep": r}
    start = time.perf_counter()
    spy = Family()
    combination_module.population_tests = spy
    try:
        with warnings.catch_warnings():  # populations too small: expected, listed below
            warnings.simplefilter("ignore", UserWarning)
            sne.tl.synergy(rep, "cond", control="ctrl", combinations={"AB": ("A", "B")},
                           model=s["model"], n_resamples=args.n_resamples, random_state=r,
                           progress=False, key_added="syn", population_key="population")
            res = rep.uns["syn"]
            tests = res["tests"]
            out["family"] = summarise(tests)
            out["every_row"] = summarise(spy.every_row(tests))
            out["within_pooled_mean_p"] = float(res["summary"].loc["AB", "pvalue"])
            out["excluded"] = list(res["excluded_populations"]["population"])
            if gamma > 0:
                sne.tl.synergy(rep, "cond", control="ctrl", combinations={"AB": ("A", "B")},
                               model=s["model"], n_resamples=args.n_resamples, random_state=r,
                               progress=False, key_added="syn")
                pooled = rep.uns["syn"]
                p = float(pooled["summary"].loc["AB", "pvalue"])
                out["pooled_mean"] = {"p": p, "found": bool(
                    p < ALPHA and pooled["qvalue"].loc["AB", FEATURE] < ALPHA)}
    finally:
        combination_module.population_tests = population_tests
    out["seconds"] = time.perf_counter() - start
    return out


def run(args):
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    ref, names, X0 = ref_cells()
    cells = gate(X0, names)
    targets = TARGETS[args.targets]
    versions = {"ctrl": X0, "A": drug_a(X0, names, cells, target=targets[0]),
                "B": drug_b(X0, names, cells, target=targets[1])}
    for g in [0.0, *args.gammas]:
        versions[f"AB {g:g}"] = combination(X0, names, cells, g, targets=targets)
    type_markers = list(names[ref.var["marker_class"] == "type"])
    labels = clusters(X0[:, [names.get_loc(m) for m in type_markers]], args)
    n = len(X0)
    train = ad.AnnData(np.vstack([versions[k] for k in ("ctrl", "A", "B")]), var=ref.var.copy())
    start = time.perf_counter()
    model = sne.NeuronEditor(train).train(random_state=args.seed, progress=False)
    train_s = time.perf_counter() - start
    # The replicates' cells are written into one AnnData of 4 n rows, to which the trained
    # model is attached once (a tl function takes a model only on its own AnnData).
    rep = ad.AnnData(np.zeros((4 * args.n_cells, len(names)), np.float32), var=ref.var.copy())
    rep.obs_names = [f"c{i}" for i in range(rep.n_obs)]
    rep.obs["cond"] = pd.Categorical(np.repeat(["ctrl", "A", "B", "AB"], args.n_cells))
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "model")
        model = sne.NeuronEditor.load(Path(tmp) / "model", rep, device="cpu")
    sizes = pd.crosstab(pd.Series(labels, name="k-means population"),
                        pd.Series(cells, name="gate"))
    print(f"trained in {train_s:.0f} s\n{sizes}", flush=True)
    plan = [(0.0, r) for r in range(args.null_reps)]
    plan += [(g, 10_000 + r) for r in range(args.power_reps) for g in args.gammas]
    s = dict(args=args, rep=rep, model=model, versions=versions, labels=labels, n_ref=n)
    meta = dict(sizes=sizes, train_s=train_s, type_markers=type_markers)
    reps = collect((replicate(job, s) for job in plan), len(plan), meta, args, t0, every=5,
                   describe=lambda o: (
                       f"gamma {o['gamma']:g} rep {o['rep']}: family {o['family']['p']:.3g} "
                       f"({o['family']['n_tests']} tests), every row {o['every_row']['p']:.3g} "
                       f"({o['every_row']['n_tests']})"
                       + (f", pooled mean {o['pooled_mean']['p']:.3g}" if "pooled_mean" in o
                          else "")))
    return reps, meta


def setting(saved) -> str:
    clus = "sne.pp.populations" if saved["clusters"] == "pp" else "sklearn KMeans"
    return (f"k = {saved['k']} ({clus}), {saved['n_cells']} cells, {saved['n_resamples']} "
            f"reruns, drugs on {'/'.join(TARGETS[saved['targets']])}")


def rate(k, n, digits=3) -> str:
    lo, hi = wilson(k, n)
    return f"{k}/{n} = {k / n:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def report(dumps) -> str:
    runs = []
    for path in dumps:
        with open(path, "rb") as fh:
            runs.append(pickle.load(fh))
    lines = ["# Synergy family across null settings (semi-synthetic, BCRXL Ref cells)", "",
             "`benchmarks/synergy_null_settings.py`; one autoencoder per setting; family = Holm "
             "over the within-population tests (`summary[\"family_pvalue\"]`), a quantile tested "
             "only with >= 25 cells beyond it in every condition (`MIN_TAIL_CELLS`); \"every "
             "row\" = the same calls' tests with every quantile tested (the family before). "
             "FPR: family p < 0.05 at gamma = 0, 95 % Wilson intervals; pooled mean: the same "
             "calls' `summary[\"pvalue\"]` (Bonferroni over the 24 features of the \"all\" "
             "means, within-population edits).", "",
             "| setting | command | null reps | family FPR | every row FPR | pooled mean FPR | "
             "tests (family / every row) | s per rep |", "|---|---|---|---|---|---|---|---|"]
    for reps, meta, saved in runs:
        null = [o for o in reps if o["gamma"] == 0]
        if not null:
            continue
        cmd = (f"`--clusters {saved['clusters']} --k {saved['k']} --n-cells {saved['n_cells']} "
               f"--n-resamples {saved['n_resamples']} --targets {saved['targets']} --null-reps "
               f"{saved['null_reps']} --power-reps {saved['power_reps']}`")
        fam = sum(o["family"]["p"] < ALPHA for o in null)
        old = sum(o["every_row"]["p"] < ALPHA for o in null)
        pooled = sum(o["within_pooled_mean_p"] < ALPHA for o in null)
        lines.append(f"| {setting(saved)} | {cmd} | {len(null)} | {rate(fam, len(null))} | "
                     f"{rate(old, len(null))} | {rate(pooled, len(null))} | "
                     f"{np.mean([o['family']['n_tests'] for o in null]):.0f} / "
                     f"{np.mean([o['every_row']['n_tests'] for o in null]):.0f} | "
                     f"{np.mean([o['seconds'] for o in null]):.1f} |")
    lines += ["", "## False calls at gamma = 0: the smallest-p test", "",
              "| setting | scored as | rep | population (cells) | feature | statistic | "
              "estimate | se | p | family p |", "|---|---|---|---|---|---|---|---|---|---|"]
    for reps, meta, saved in runs:
        for o in reps:
            for kind in ("family", "every_row"):
                f = o[kind]
                if o["gamma"] == 0 and f["p"] < ALPHA:
                    x = f["first"]
                    lines.append(f"| {setting(saved)} | {kind.replace('_', ' ')} | {o['rep']} | "
                                 f"{x['population']} ({x['n_observed']}) | {x['feature']} | "
                                 f"{x['statistic']} | {x['estimate']:+.3f} | {x['se']:.3f} | "
                                 f"{x['pvalue']:.2g} | {f['p']:.3f} |")
    lines += ["", "## Power (interaction: T cells pPlcg2 += 0.5 gamma)", "",
              "Detection: summary p < 0.05 and pPlcg2 among the q < 0.05 tests. Pooled mean: "
              "a run without populations, Bonferroni over the 24 features (the wide tables).", "",
              "| setting | gamma | reps | family | every row | pooled mean |",
              "|---|---|---|---|---|---|"]
    for reps, meta, saved in runs:
        for g in saved["gammas"]:
            rows = [o for o in reps if o["gamma"] == g]
            if rows:
                lines.append(f"| {setting(saved)} | {g:g} | {len(rows)} | " + " | ".join(
                    rate(sum(o[k]["found"] for o in rows), len(rows), 2)
                    for k in ("family", "every_row", "pooled_mean")) + " |")
    lines += ["", "## Populations (Ref cells) and the gate of the single drugs", ""]
    for reps, meta, saved in runs:
        sizes = meta["sizes"]
        lines += [f"{setting(saved)}: k-means population sizes "
                  + ", ".join(f"{p}: {c}" for p, c in sizes.sum(1).sort_values().items())
                  + f"; autoencoder trained in {meta['train_s']:.0f} s, total "
                  f"{meta['total_s'] / 60:.0f} min.", ""]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clusters", choices=("pp", "sklearn"), default="pp")
    p.add_argument("--k", type=int, default=10, help="k-means populations on the type markers")
    p.add_argument("--n-cells", type=int, default=1000, help="cells per condition")
    p.add_argument("--n-resamples", type=int, default=20)
    p.add_argument("--targets", choices=tuple(TARGETS), default="BT")
    p.add_argument("--null-reps", type=int, default=100)
    p.add_argument("--power-reps", type=int, default=10, help="replicates per gamma")
    p.add_argument("--gammas", nargs="*", type=float, default=[0.5, 1.0, 2.0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dump", default=None)
    p.add_argument("--report", nargs="*", default=None, help="dumps to report on, in order")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"
                                        / "synergy_null_settings.md"))
    args = p.parse_args()
    if args.report is None:
        reps, meta = run(args)
        if not args.dump:
            print(report([_dumped(reps, meta, args)]))
        return
    text = report(args.report)
    Path(args.out).write_text(text)
    print(text)


def _dumped(reps, meta, args) -> str:
    path = tempfile.mktemp(suffix=".pkl")
    with open(path, "wb") as fh:
        pickle.dump((reps, meta, vars(args)), fh)
    return path


if __name__ == "__main__":
    main()
