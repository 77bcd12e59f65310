"""Reference-sample batch correction on the Gates CyTOF controls (CytoNorm's data).

Volunteer 1 (``reference``) is run in all 4 batches and is the only source of
edits; volunteer 2 is scored. Scores on arcsinh(x/5) of the named marker
channels (no barcodes, DNA, beadDist):

- batch EMD: per marker, the largest EMD between two batches of volunteer 2,
  averaged over markers (lower is better);
- spread gap: ``sne.metrics.spread_gap`` of volunteer 2 -- mean relative distance
  of each batch's per-marker MAD from the mean over batches (lower is better; the
  batch effect changes spreads, so a correction must change them, towards each
  other);
- donor gap: mean within-batch EMD between volunteer 1 and 2 (the biology: keep
  it within 10 % of uncorrected);
- MAD change: mean absolute relative change of each marker's MAD per
  volunteer-2 file, for information only (it cannot tell a correction of the
  spread from damage to it).

    python benchmarks/batch_gates.py            # seeds 0 1 2
    python benchmarks/batch_gates.py --seeds 0 --set decode='"plain"' max_epochs=100 \
        --per-marker --out /tmp/ablation.md     # ablation + per-marker diagnosis

Also in the table: the metric's floor (volunteer 2's cells pooled and dealt
into four random "batches" of the same sizes), and an oracle that no
reference method can be: the quantile map fitted on both volunteers, so it
sees the held-out donor. ``--variant`` adds a neuron-editing run with other
options next to the default (``edit_layer="auto"``); by default the input layer, the
bottleneck, and the bottleneck with ``pooled_goal="mixture"`` (the default before
issue 25).

Prints a table and writes benchmarks/results/batch_gates.md. CytoNorm runs in
its own environment: ``benchmarks/batch_gates_cytonorm.py``.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import shlex
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

import sc_neuronedit as sne
from sc_neuronedit import metrics
from sc_neuronedit._learning import group_weights

#: Surface markers that define cell types in this panel (for ``--populations``).
LINEAGE = ("CD45", "CD66", "CD7", "CD19", "CD45RA", "CD11b", "CD4", "CD8a", "CD11c", "CD123", "TCRgd",
           "CD161", "CD33", "CD16", "CD3", "CD15", "CD14", "CD56", "HLADR")


#: The default run's label: batch_correct's default is the self-check's choice.
DEFAULT_LABEL = 'default: edit_layer="auto"'


def marker_mask(adata) -> np.ndarray:
    mk = adata.var["marker"].astype(str)
    return ((mk != "") & ~mk.str.match(r"^BC\d$") & ~mk.isin(["DNA1", "DNA2", "beadDist"])
            & adata.var_names.str.endswith("Di")).to_numpy()


def per_marker(X, batch, ref, before):
    """Per marker: worst-pair batch EMD, spread gap and relative MAD change of volunteer 2."""
    v2 = ~ref
    levels = np.unique(batch)
    emd = np.array([
        max(metrics.emd_per_feature(X[v2 & (batch == p)][:, [j]], X[v2 & (batch == q)][:, [j]])[0]
            for p, q in itertools.combinations(levels, 2))
        for j in range(X.shape[1])
    ])

    mad = metrics.mad_per_feature
    gap = np.array([metrics.spread_gap(X[v2][:, [j]], batch[v2]) for j in range(X.shape[1])])
    mad_change = np.mean([
        np.abs(mad(X[v2 & (batch == b)]) - mad(before[v2 & (batch == b)]))
        / np.maximum(mad(before[v2 & (batch == b)]), 1e-3)
        for b in levels
    ], axis=0)
    return emd, gap, mad_change


def scores(X, batch, ref, before):
    v2 = ~ref
    levels = np.unique(batch)
    emd, spread, mad_change = (float(np.mean(v)) for v in per_marker(X, batch, ref, before))
    gap = np.mean([metrics.emd_per_feature(X[ref & (batch == b)], X[v2 & (batch == b)]).mean()
                   for b in levels])
    return dict(batch_emd=emd, spread_gap=spread, donor_gap=gap, mad_change=mad_change)


def quantile_reference(X, batch, ref, *, goal="average"):
    """Per batch and marker, map the reference's quantiles onto the goal's.

    ``goal="average"``: the average over batches of the reference's quantiles (quantile
    normalisation: each batch's monotone map to every batch's reference, averaged), with
    zeros kept (a zero count stays zero under an intensity change); ``"mixture"``: the
    pooled reference, every batch weighing the same, zeros not kept (the earlier baseline).
    """
    out = X.copy()
    levels = np.unique(batch)
    if goal == "mixture":
        goals = [(torch.as_tensor(X[ref]), torch.as_tensor(group_weights(batch[ref])))]
    else:
        goals = [(torch.as_tensor(X[ref & (batch == c)]), None) for c in levels]
    for b in levels:
        src = torch.as_tensor(X[ref & (batch == b)])
        cells = torch.as_tensor(X[batch == b])
        out[batch == b] = np.mean([sne.fit_quantile_edit(src, g, target_weights=w).apply(cells).numpy()
                                   for g, w in goals], axis=0)
        if goal != "mixture":
            out[batch == b] = np.where(X[batch == b] == 0, 0, np.maximum(out[batch == b], 0))
    return out


def metric_floor(X, batch, ref, n_draws: int = 5, seed: int = 0) -> float:
    """Batch EMD of volunteer 2 with batch labels dealt at random: no batch effect left."""
    rng = np.random.default_rng(seed)
    v2 = np.flatnonzero(~ref)
    draws = []
    for _ in range(n_draws):
        shuffled = batch.copy()
        shuffled[v2] = rng.permutation(batch[v2])
        draws.append(np.mean(per_marker(X, shuffled, ref, X)[0]))
    return float(np.mean(draws))


def donor_difference_spread(X, batch, ref) -> float:
    """Per marker, how much volunteer 2's within-batch median difference from volunteer 1
    varies over batches (max - min), averaged: a sample-level shift no reference sees."""
    med = pd.DataFrame(X).groupby([batch, ref]).median()
    diff = med.xs(False, level=1) - med.xs(True, level=1)
    return float((diff.max() - diff.min()).mean())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "batch_gates.md"))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override a tl.batch_correct option, e.g. decode='\"residual\"'")
    p.add_argument("--variant", nargs="*", action="append", metavar="KEY=VALUE",
                   help="options of another neuron-editing run; repeat for several (default: one, "
                        "calibrate=True; an empty --variant: only the default)")
    p.add_argument("--populations", type=int, default=None, metavar="K",
                   help="add .obs['population']: sne.pp.populations with K clusters on the lineage "
                        "markers, fitted on volunteer 1 (the reference) only, for variants with "
                        "population_key='\"population\"'")
    p.add_argument("--variants-only", action="store_true",
                   help="skip the default run (its row is in batch_gates.md); only the variants")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 because on shared cores more threads oversubscribe")
    p.add_argument("--per-marker", action="store_true",
                   help="also print per-marker scores: uncorrected, quantile map, neuron editing")
    args = p.parse_args()
    def parse(pairs):
        return {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in pairs)}

    torch.set_num_threads(args.threads)
    runs = {} if args.variants_only else {
        f"neuron editing ({' '.join(args.set) or DEFAULT_LABEL})": parse(args.set)}
    default_variants = [['edit_layer="input"'], ['edit_layer="bottleneck"'],
                        ['edit_layer="bottleneck"', 'pooled_goal="mixture"']]
    for variant in default_variants if args.variant is None else args.variant:
        if variant:
            runs[f"neuron editing ({' '.join(args.set + variant)})"] = parse(args.set + variant)
    import scanpy as sc

    adata = ad.read_h5ad(sne.datasets.data_dir() / "cytonorm_gates.h5ad")
    sne.pp.arcsinh(adata, 5)
    markers = marker_mask(adata)
    adata.var["marker_channel"] = markers
    batch, ref = adata.obs["batch"].to_numpy().astype(str), adata.obs["reference"].to_numpy()
    if args.populations:
        # Fixed before any run: surface (lineage) markers, never the signalling ones scored too.
        lineage = adata.var["marker"].isin(LINEAGE).to_numpy()
        sne.pp.populations(adata, lineage, args.populations, fit_on=ref, layer="arcsinh")
    before = adata.layers["arcsinh"][:, markers]
    checked = []
    rows = [dict(method="uncorrected", seed=0, **scores(before, batch, ref, before))]
    quantile = quantile_reference(before, batch, ref)
    rows.append(dict(method="quantile map of reference (average quantiles)", seed=0,
                     **scores(quantile, batch, ref, before)))
    rows.append(dict(method="quantile map of reference (mixture goal)", seed=0,
                     **scores(quantile_reference(before, batch, ref, goal="mixture"), batch, ref, before)))
    cb = ad.AnnData(before.copy(), obs=adata.obs[["batch"]].copy())
    sc.pp.combat(cb, key="batch")
    rows.append(dict(method="ComBat (all cells)", seed=0, **scores(np.asarray(cb.X), batch, ref, before)))
    rows.append(dict(method="oracle: quantile map fitted on both volunteers", seed=0,
                     **scores(quantile_reference(before, batch, np.ones_like(ref)), batch, ref, before)))
    for (label, options), seed in itertools.product(runs.items(), args.seeds):
        start = time.perf_counter()
        sne.tl.batch_correct(adata, "batch", reference_key="reference", reference_value=True,
                             layer="arcsinh", mask_var="marker_channel", random_state=seed,
                             progress=False, **options)
        seconds = time.perf_counter() - start
        X = adata.layers["batch_corrected"][:, markers]
        rows.append(dict(method=label, seed=seed, seconds=seconds, **scores(X, batch, ref, before)))
        summary = adata.uns["batch_corrected"].get("self_check_summary")
        if summary is not None:
            checked.append(dict(method=label, seed=seed, **summary))
        print(rows[-1], flush=True)
        if seed == args.seeds[0] and label == next(iter(runs)):  # for --per-marker: the first run
            default_run = X
    if args.per_marker:
        names = adata.var["marker"][markers].to_numpy()
        kinds = ["batch_emd", "spread_gap", "mad_change"]
        flat = pd.concat({
            name: pd.DataFrame(np.column_stack(per_marker(M, batch, ref, before)), index=names,
                               columns=kinds)
            for name, M in (("uncorrected", before), ("quantile map", quantile),
                            ("neuron editing", default_run))
        }, axis=1)
        print(flat.sort_values(("neuron editing", "spread_gap"), ascending=False).round(3).to_string())
    df = pd.DataFrame(rows)
    cols = ["batch_emd", "spread_gap", "donor_gap", "mad_change", "seconds"]
    agg = df.groupby("method", sort=False)[cols].agg(["mean", "std"])
    lines = ["# Gates reference-sample batch correction", "",
             f"`python benchmarks/batch_gates.py {shlex.join(sys.argv[1:])}` — "
             f"{int(markers.sum())} marker channels, volunteer 2 "
             f"scored, edits learned from volunteer 1 only; neuron editing over seeds {args.seeds}. "
             "CytoNorm: `benchmarks/batch_gates_cytonorm.py` (own environment). "
             f"Metric floor (volunteer 2 dealt into random batches): {metric_floor(before, batch, ref):.3f}. "
             "Volunteer 2's within-batch median difference from volunteer 1 varies over batches by "
             f"{donor_difference_spread(before, batch, ref):.3f} per marker (mean of max - min): "
             "a sample-level shift that a correction learned from volunteer 1 cannot see.",
             *([f"Populations: `sne.pp.populations` with k = {args.populations} on "
                f"{len(LINEAGE)} surface markers, fitted on volunteer 1's cells."] if args.populations
               else []), "",
             ]
    if checked:
        ck = pd.DataFrame(checked)
        lines += ["Self-check (split-half proxy on volunteer 1's cells) per run:", "",
                  "| method | seed | chosen | proxy error | proxy skill | proxy spread gap "
                  "(no change) | next best |",
                  "|---|---|---|---|---|---|---|",
                  *(f"| {r.method} | {r.seed} | {r.chosen} | {r.expected_error:.3f} | "
                    f"{r.expected_skill:.3f} | {r.expected_spread_gap:.3f} "
                    f"({r.no_change_spread_gap:.3f}) | {r.next_best} |"
                    for r in ck.itertuples()), ""]
    write_table(agg, lines, args.out)


def write_table(agg: pd.DataFrame, lines: list[str], out) -> None:
    """Append the scores table (mean ± sd over runs) to ``lines``; print and write to ``out``."""
    lines = [*lines, "| method | batch EMD ↓ | spread gap ↓ | donor gap (keep) | MAD change (info) "
             "| s per run |", "|---|---|---|---|---|---|"]

    def cell(r, c):
        sd = r[(c, "std")]
        return f"{r[(c, 'mean')]:.3f}" + (f" ± {sd:.3f}" if pd.notna(sd) else "")  # NaN: one run

    for m, r in agg.iterrows():
        spent = r.get(("seconds", "mean"), np.nan)
        lines.append(f"| {m} | " + " | ".join(cell(r, c) for c in ("batch_emd", "spread_gap", "donor_gap", "mad_change"))
                     + f" | {'' if pd.isna(spent) else f'{spent:.1f}'} |")
    text = "\n".join(lines) + "\n"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
