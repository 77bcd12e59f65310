"""Synergy within populations: calibration and power, pooled vs within-population tests.

Extends ``benchmarks/synergy_calibration.py`` (same cells, drugs, model and splits) with two
designs whose interaction lives in B cells (CD20 > 3 in arcsinh units, ~7 % of the Ref cells):

- ``today``: AB = B(A(x)) + 0.5 gamma on pPlcg2 in T cells (the calibration benchmark's design);
- ``a``: AB = B(A(x)) + gamma on pBtk in B cells;
- ``b``: AB = B(A(x)) + gamma on pBtk in the B cells whose untreated pS6 is above the B-cell
  median (a shift of a subset of a population).

Populations: ``sne.pp.populations`` (k-means, ``--n-populations``, fixed before the run) on the
10 type markers of the untreated cells; never the CD20 gate that defines the designs. The
"designed population" is the k-means population that holds most of the gated B cells (T cells
for ``today``).

Per replicate: disjoint groups of ``--n-cells`` per condition, ``sne.tl.synergy`` once pooled
(no population_key) and once within populations, ``--n-resamples`` reruns, one autoencoder
trained once on every Ref cell's control, A and B versions. At gamma = 0 the three designs are
the same data, so the null replicates serve all. Power replicates reuse the first null splits.

Variants, all from these two calls (test family = the rows named; summary p = Holm over them):

- ``pooled mean (today's test)``: pooled run, the mean of every feature (24 tests);
- ``pooled, mean + quantiles``: pooled run, mean, q10, q50, q90 (96 tests);
- ``within, mean``: within run, the mean in "all" and every population;
- ``within, mean + quantiles``: within run, the whole ``tests`` table (the package default).

A detection: summary p < 0.05 and, for the designed feature in the designed population ("all"
for the pooled runs), some statistic of the family with q < 0.05. A false positive at gamma = 0:
summary p < 0.05.

    SC_NEURONEDIT_DATA_DIR=/work/shared/data python benchmarks/synergy_populations.py \
        --null-reps 300 --power-reps 25 --n-cells 1000 --n-populations 6 --workers 2
    python benchmarks/synergy_populations.py --load /tmp/synpop.pkl    # re-report a dump
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scipy import stats

import sc_neuronedit as sne
from sc_neuronedit._synergy import STATISTICS, holm
from sc_neuronedit.datasets._semisynthetic import combination, drug_a, drug_b, populations

sys.path.insert(0, str(Path(__file__).parent))
from synergy_calibration import collect, ref_cells, split, wilson  # noqa: E402  (same splits, same CI)

ALPHA = 0.05
DESIGNS = {"today": ("pPlcg2", "T"), "a": ("pBtk", "B"), "b": ("pBtk", "B")}
VARIANTS = ("pooled mean (today's test)", "pooled, mean + quantiles", "within, mean",
            "within, mean + quantiles")


def versions(X0, names, gate, gammas):
    """Every Ref cell's control, A and B version and its AB version per design and gamma."""
    out = {"ctrl": X0, "A": drug_a(X0, names, gate), "B": drug_b(X0, names, gate)}
    b = gate == "B"
    s6 = X0[:, names.get_loc("pS6")]
    high = b & (s6 > np.median(s6[b]))
    btk = names.get_loc("pBtk")
    for g in gammas:
        out[f"AB today {g:g}"] = combination(X0, names, gate, g)
        for design, cells in (("a", b), ("b", high)):
            X = combination(X0, names, gate, 0.0)
            X[cells, btk] += g
            out[f"AB {design} {g:g}"] = X
    return out


def family_decision(tests, feature, population, statistics):
    """Holm summary p over the rows of ``statistics``; whether the designed cell is found."""
    # rows the package leaves untested (p NaN: too few cells beyond a quantile) are not in it
    fam = tests[tests["statistic"].isin(statistics) & tests["pvalue"].notna()].copy()
    fam["qvalue"] = stats.false_discovery_control(fam["pvalue"].to_numpy())
    summary = float(holm(fam["pvalue"].to_numpy()).min())
    own = fam[(fam["feature"] == feature) & (fam["population"] == population)]
    return summary, bool(summary < ALPHA and (own["qvalue"] < ALPHA).any()), own


def replicate(job):
    design, gamma, r = job
    s = _STATE
    args, adata, off = s["args"], s["adata"], s["offset"]
    groups = split(s["n_total"], args.n_cells, r, args.seed)
    ab = "AB today 0" if gamma == 0 else f"AB {design} {gamma:g}"
    cond = np.full(adata.n_obs, "unused", dtype=object)
    for v, key, g in zip(("ctrl", "A", "B", "AB"), ("ctrl", "A", "B", ab), groups):
        cond[off[key] + g] = v
    adata.obs["cond"] = pd.Categorical(cond, categories=["ctrl", "A", "B", "AB", "unused"])
    out = {"design": design, "gamma": gamma, "rep": r}
    start = time.perf_counter()
    runs = {}
    with warnings.catch_warnings():  # populations too small in a rerun: expected, counted below
        warnings.simplefilter("ignore", UserWarning)
        for kind, pop_key in (("pooled", None), ("within", "population")):
            sne.tl.synergy(adata, "cond", control="ctrl", combinations={"AB": ("A", "B")},
                           model=s["model"], n_resamples=args.n_resamples, random_state=r,
                           progress=False, key_added="syn", population_key=pop_key)
            runs[kind] = adata.uns["syn"]
    out["seconds"] = time.perf_counter() - start
    designs = DESIGNS if gamma == 0 else {design: DESIGNS[design]}
    for d, (feature, gated) in designs.items():
        target = s["designed"][gated]
        for variant in VARIANTS:
            kind = variant.split()[0].rstrip(",")
            tests = runs[kind]["tests"]
            if variant == "pooled mean (today's test)":
                stats_ = ("mean",)
            else:
                stats_ = ("mean",) if variant.endswith("mean") else STATISTICS
            summary, found, own = family_decision(tests, feature, target if kind == "within"
                                                  else "all", stats_)
            out[d, variant] = {"p": summary, "found": found,
                               "own": own[["statistic", "estimate", "se", "pvalue"]].to_dict("list")}
    out["excluded"] = list(runs["within"]["excluded_populations"]["population"])
    return out


_STATE: dict = {}


def run(args):
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    ref, names, X0 = ref_cells()
    gate = populations(X0, names)
    gammas = sorted(g for g in args.gammas if g > 0)
    vers = versions(X0, names, gate, [0.0, *gammas])
    n = len(X0)
    adata = ad.AnnData(np.vstack(list(vers.values())).astype(np.float32), var=ref.var.copy())
    adata.obs_names = [f"{v}|{i}" for v in vers for i in range(n)]
    offset = {v: i * n for i, v in enumerate(vers)}
    # k-means on the untreated cells' type markers; drugs never move them, so every version of
    # a cell falls in the same population
    type_markers = list(ref.var_names[ref.var["marker_class"] == "type"])
    sne.pp.populations(ref, type_markers, args.n_populations, layer="arcsinh",
                       random_state=args.seed)
    labels = ref.obs["population"].astype(str).to_numpy()
    adata.obs["population"] = pd.Categorical(np.tile(labels, len(vers)))
    crosstab = pd.crosstab(pd.Series(labels, name="k-means population"),
                           pd.Series(gate, name="gate"))
    designed = {g: str(crosstab[g].idxmax()) for g in ("B", "T")}
    start = time.perf_counter()
    model = sne.NeuronEditor(adata).train(
        cells=np.isin(np.arange(adata.n_obs) // n, [0, 1, 2]), random_state=args.seed,
        progress=False)
    train_s = time.perf_counter() - start
    print(f"trained in {train_s:.0f} s; designed populations {designed}\n{crosstab}", flush=True)
    # interleaved in proportion, so that a run stopped early still has as large a share of
    # its null replicates as of its power replicates
    plan = [("today", 0.0, r) for r in range(args.null_reps)]
    plan += [(d, g, r) for r in range(args.power_reps) for g in gammas for d in DESIGNS]
    plan.sort(key=lambda job: job[2] / (args.null_reps if job[1] == 0 else args.power_reps))
    _STATE.update(adata=adata, model=model, offset=offset, n_total=n, args=args, designed=designed)
    if args.workers > 1:  # fork: workers inherit the data and the trained model
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(args.workers, initializer=torch.set_num_threads,
                                           initargs=(args.threads,))
        results = pool.imap(replicate, plan)
    else:
        pool, results = None, map(replicate, plan)
    meta = dict(crosstab=crosstab, designed=designed, train_s=train_s, gammas=gammas,
                n_ref=n, type_markers=type_markers, n_features=len(names))
    reps = collect(results, len(plan), meta, args, t0, every=10, describe=lambda o: (
        f"{o['design']} gamma {o['gamma']:g} rep {o['rep']}: "
        + ", ".join(f"{v.split(' (')[0]} {o[o['design'], v]['p']:.3g}" for v in VARIANTS)))
    if pool is not None:
        pool.close()
        pool.join()
    return reps, meta


def power_bound(null, meta, args, design, n_tests):
    """Normal-approximation power of the within-population mean test of the designed cell
    at the Bonferroni (Holm's first step) threshold, from the null replicates' median SE."""
    feature, gated = DESIGNS[design]
    ses = [o[design, "within, mean"]["own"]["se"] for o in null]
    se = float(np.median([x[0] for x in ses if x])) if any(ses) else np.nan  # [] = left out
    crosstab = meta["crosstab"]
    pop = meta["designed"][gated]
    share = crosstab.loc[pop, gated] / crosstab.loc[pop].sum()  # gated cells in the population
    per_gamma = {"today": 0.5, "a": 1.0, "b": 0.5}[design]  # (b): half the B cells move
    z = stats.norm.isf(ALPHA / n_tests / 2)
    return se, share, {g: float(stats.norm.sf(z - g * per_gamma * share / se))
                       for g in meta["gammas"]}


def markdown(df) -> list[str]:
    head = [df.index.name or "", *map(str, df.columns)]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(map(str, [i, *row])) + " |" for i, row in zip(df.index, df.values))]


def report(reps, meta, args) -> str:
    null = [o for o in reps if o["gamma"] == 0]
    n_pop = args.n_populations
    lines = [
        "# Synergy within populations (semi-synthetic, BCRXL Ref cells)", "",
        f"`SC_NEURONEDIT_DATA_DIR=/work/shared/data python benchmarks/synergy_populations.py "
        f"--null-reps {args.null_reps} --power-reps {args.power_reps} --n-cells {args.n_cells} "
        f"--n-populations {n_pop} --n-resamples {args.n_resamples} --workers {args.workers}`", "",
        f"Settings fixed before the run: {args.n_cells} cells per condition, {n_pop} k-means "
        f"populations on the type markers ({', '.join(meta['type_markers'])}) of the untreated "
        f"cells, {args.n_resamples} reruns per synergy call. Designed population: k-means "
        f"population {meta['designed']['B']} for the B-cell designs (a, b), "
        f"{meta['designed']['T']} for today's T-cell design.",
        f"Runtime: {meta['total_s'] / 60:.1f} min for {len(reps)} replicates "
        f"({np.mean([o['seconds'] for o in reps]):.1f} s per replicate for the two synergy calls, "
        f"{args.workers} worker(s), torch threads {args.threads}, 2 CPU cores shared with other "
        f"jobs); autoencoder trained once in {meta['train_s']:.0f} s.", "",
    ]
    planned = args.null_reps + args.power_reps * len(meta["gammas"]) * len(DESIGNS)
    if len(reps) < planned:
        lines += [f"**Partial run: {len(reps)} of {planned} planned replicates** ({len(null)} null, "
                  f"{len(reps) - len(null)} power; the run was stopped and re-reported from its "
                  "last dump with `--load`). Rates below are from these replicates only.", ""]
    lines += [
        "k-means populations vs the gate (Ref cells):", "",
        *markdown(meta["crosstab"]), "",
    ]
    excluded = pd.Series([p for o in null for p in o["excluded"]]).value_counts()
    if len(excluded):
        lines += ["Populations left out (< 20 cells in a condition), null replicates: "
                  + ", ".join(f"{p} in {k}" for p, k in excluded.items()) + "", ""]
    n_feat = meta["n_features"]
    lines += ["## Analytic power of the within-population mean test", "",
              "Normal approximation, |z| above the Bonferroni threshold of the family "
              "(Holm's first step), SE = median over the null replicates of the designed cell's "
              "SE; shift = gamma x effect x share of moved cells in the designed population.", "",
              "| design | population | SE | share | family | "
              + " | ".join(f"gamma {g:g}" for g in meta["gammas"]) + " |",
              "|---|---|---|---|---|" + "---|" * len(meta["gammas"])]
    for design in DESIGNS:
        pops_tested = n_pop + 1 - len(excluded) / max(len(null), 1)
        for fam, m in (("mean", pops_tested * n_feat),
                       ("mean + quantiles", pops_tested * n_feat * len(STATISTICS))):
            se, share, bound = power_bound(null, meta, args, design, m)
            lines.append(f"| {design} ({fam}) | {meta['designed'][DESIGNS[design][1]]} | {se:.3f} | "
                         f"{share:.2f} | {m:.0f} | "
                         + " | ".join(f"{bound[g]:.2f}" for g in meta["gammas"]) + " |")
    lines += ["", f"## False-positive rate at gamma = 0 ({len(null)} null replicates; summary "
              "p < 0.05)", "", "| variant | FPR [95 % Wilson CI] |", "|---|---|"]
    for v in VARIANTS:
        k = sum(o["today", v]["p"] < ALPHA for o in null)
        lo, hi = wilson(k, len(null))
        lines.append(f"| {v} | {k / len(null):.3f} [{lo:.3f}, {hi:.3f}] |")
    for design in DESIGNS:
        feature, gated = DESIGNS[design]
        lines += ["", f"## Power, design {design} ({feature}, designed population "
                  f"{meta['designed'][gated]})", "",
                  "| gamma | reps | " + " | ".join(VARIANTS) + " |", "|---|---|" + "---|" * len(VARIANTS)]
        for g in meta["gammas"]:
            rows = [o for o in reps if o["design"] == design and o["gamma"] == g]
            if not rows:
                continue
            cells = []
            for v in VARIANTS:
                k = sum(o[design, v]["found"] for o in rows)
                lo, hi = wilson(k, len(rows))
                cells.append(f"{k / len(rows):.2f} [{lo:.2f}, {hi:.2f}]")
            lines.append(f"| {g:g} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--null-reps", type=int, default=300)
    p.add_argument("--power-reps", type=int, default=25, help="replicates per design and gamma")
    p.add_argument("--gammas", nargs="*", type=float, default=[0.25, 0.5, 1.0, 2.0])
    p.add_argument("--n-cells", type=int, default=1000, help="cells per condition")
    p.add_argument("--n-populations", type=int, default=6, help="k-means populations")
    p.add_argument("--n-resamples", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "synergy_populations.md"))
    p.add_argument("--dump", default=None)
    p.add_argument("--load", default=None)
    args = p.parse_args()
    if args.load:
        with open(args.load, "rb") as fh:
            reps, meta, saved = pickle.load(fh)
        args = argparse.Namespace(**{**saved, "out": args.out})
    else:
        reps, meta = run(args)
    text = report(reps, meta, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
