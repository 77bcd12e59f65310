"""Held-out donor prediction of BCR/FcR cross-linking on CyTOF (Bodenmiller BCRXL).

For each of the 6 patients: learn Ref -> BCRXL on the other 5 (each weighing
equally) and predict this patient's BCRXL cells from its Ref cells; its BCRXL
cells never enter training (``sne.tl.predict_perturbation`` with
``groupby="patient_id"``, package defaults). Data: arcsinh(x/5) of all 24
markers. Score: per state marker, the 1-D EMD between predicted and real BCRXL
cells within populations gated on type markers -- B (CD20 > 3), T (CD3 > 3,
CD20 <= 3), other. Predicted cells are gated on their own Ref values (type
markers should not change), real cells on theirs. "gated" is the mean over
the 3 populations of the mean over the 14 state markers; "B" is B cells alone.
Baselines share the run: no change, mean shift, and a per-marker quantile edit
applied directly in marker space (all 24 markers, like the model).

    SC_NEURONEDIT_DATA_DIR=/work/shared/data python benchmarks/bcrxl_donors.py   # 6 patients x seeds 0 1 2
    python benchmarks/bcrxl_donors.py --patients Patient2 --seeds 0 --per-marker --recon
    python benchmarks/bcrxl_donors.py --decode-forms --per-marker --recon          # + diagnosis
    python benchmarks/bcrxl_donors.py --seeds 0 --set decode='"plain"' \
        --out /tmp/bcrxl_plain.md                                               # an ablation

``--set`` overrides a ``tl.predict_perturbation`` option (decode, n_quantiles,
balance, max_epochs, model_kwargs, train_kwargs); the default table uses none.
Prints a table and writes benchmarks/results/bcrxl_donors.md.

``--populations`` adds edits within populations (``sne.pp.populations``: k-means
on the 10 type markers, fitted on every cell but the held-out patient's BCRXL
cells, clustering seed = the run's seed; never the scorer's gates). k is chosen
per held-out patient and seed from ``K_CHOICES`` by an inner leave-one-patient-out
over the 5 training patients with the input-layer edit (no autoencoder, so no
model that saw an inner patient's BCRXL cells): the k whose within-population
predictions are closest to the inner patients' real BCRXL cells (energy distance
on all 24 markers). Rows: the input layer and the bottleneck, each within
populations; the bottleneck reuses the run's autoencoder.

    python benchmarks/bcrxl_donors.py --populations --out benchmarks/results/bcrxl_populations.md
"""

from __future__ import annotations

import argparse
import ast
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

import sc_neuronedit as sne
from sc_neuronedit import metrics
from sc_neuronedit._learning import group_weights

COND, DONOR, CTRL, STIM = "condition", "patient_id", "Ref", "BCRXL"
POPS = ("B", "T", "other")
BASELINES = ("no change", "mean shift", "marker-space quantile edit")
ISSUE = {"no change": (0.458, 0.610), "mean shift": (0.388, 0.536),
         "marker-space quantile edit": (0.290, 0.456)}
TARGET = (0.22, 0.35)  # gated, B cells
POPULATION_TARGET = (0.245, 0.31)  # the populations issue's
K_CHOICES = (5, 10, 20)
#: Cells per side in the inner energy distance (a subsample keeps it quick).
INNER_CELLS = 600


def gate(X, names) -> np.ndarray:
    """Population per cell from type markers. CD3 has no valley in this panel (one
    mode near 3.3 with a long low tail), so T = CD3 > 3 keeps the upper mode only."""
    cd20, cd3 = X[:, names.get_loc("CD20")], X[:, names.get_loc("CD3")]
    return np.where(cd20 > 3, "B", np.where(cd3 > 3, "T", "other"))


def population_emd(P, pop_p, R, pop_r, state) -> dict[str, np.ndarray]:
    """Per population: EMD per state marker between predicted and real cells."""
    return {g: metrics.emd_per_feature(P[pop_p == g][:, state], R[pop_r == g][:, state])
            for g in POPS}


def baselines(X, donor, cond, patient) -> dict[str, np.ndarray]:
    train = donor != patient
    src, tgt = train & (cond == CTRL), train & (cond == STIM)
    ctrl = X[(donor == patient) & (cond == CTRL)]
    out = {"no change": ctrl,
           "mean shift": metrics.mean_shift_prediction(
               ctrl, X[src], X[tgt], source_groups=donor[src], target_groups=donor[tgt])}
    # Neuron editing without the autoencoder: the same per-dimension quantile
    # edit, with each training patient weighing equally, on the markers themselves.
    w = lambda m: torch.as_tensor(group_weights(donor[m]))  # every donor weighs the same
    edit = sne.fit_quantile_edit(torch.as_tensor(X[src], dtype=torch.float64),
                                 torch.as_tensor(X[tgt], dtype=torch.float64),
                                 source_weights=w(src), target_weights=w(tgt))
    out["marker-space quantile edit"] = edit.apply(torch.as_tensor(ctrl, dtype=torch.float64)).numpy()
    return out


def rotated_quantile_edit(X, donor, cond, patient, seed) -> np.ndarray:
    """The marker-space quantile edit, done in a random orthonormal basis of the
    standardised markers (diagnosis: how much does the basis alone cost?).

    Neuron editing edits each neuron on its own, and an autoencoder's neurons mix
    markers; this isolates that from everything else the autoencoder does."""
    train = donor != patient
    src, tgt = train & (cond == CTRL), train & (cond == STIM)
    mu, sd = X[train].mean(0), X[train].std(0) + 1e-6
    Q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((X.shape[1], X.shape[1])))
    rot = lambda M: torch.as_tensor(((M - mu) / sd) @ Q, dtype=torch.float64)
    w = lambda m: torch.as_tensor(group_weights(donor[m]))
    edit = sne.fit_quantile_edit(rot(X[src]), rot(X[tgt]), source_weights=w(src), target_weights=w(tgt))
    edited = edit.apply(rot(X[(donor == patient) & (cond == CTRL)])).numpy()
    return edited @ Q.T * sd + mu


def neuron_edit(adata, patient, seed, overrides):
    """Train exactly as predict_perturbation does (so training is timed on its own and
    the model stays available for --recon), then predict through the tl API."""
    opts = dict(overrides)
    donor, cond = adata.obs[DONOR].to_numpy(), adata.obs[COND].to_numpy()
    train_kw = dict(opts.pop("train_kwargs", {}))
    if "max_epochs" in opts:
        train_kw["max_epochs"] = opts.pop("max_epochs")
    start = time.perf_counter()
    model = sne.NeuronEditor(adata, layer="arcsinh", **opts.pop("model_kwargs", {})).train(
        cells=~((donor == patient) & (cond == STIM)), random_state=seed, progress=False, **train_kw)
    seconds = time.perf_counter() - start
    pred = sne.tl.predict_perturbation(
        adata, COND, control=CTRL, perturbed=STIM, groupby=DONOR, predict_for=patient,
        layer="arcsinh", model=model, random_state=seed, progress=False, inplace=False, **opts)
    return np.asarray(pred.X), model, seconds


def choose_k(adata, patient, seed, fit_on, type_markers) -> tuple[int, dict]:
    """k by an inner leave-one-patient-out over the training patients (input-layer edits)."""
    donor = adata.obs[DONOR].to_numpy()
    inner = adata[donor != patient].copy()
    inner_donor, inner_cond = inner.obs[DONOR].to_numpy(), inner.obs[COND].to_numpy()
    rng = np.random.default_rng(seed)

    def sub(M):
        return M[rng.choice(len(M), min(INNER_CELLS, len(M)), replace=False)]

    errors = {}
    for k in K_CHOICES:
        sne.pp.populations(adata, type_markers, k, fit_on=fit_on, layer="arcsinh", random_state=seed,
                           key_added="inner_population")
        inner.obs["inner_population"] = adata.obs["inner_population"][donor != patient].to_numpy()
        errs = []
        for q in sorted(np.unique(inner_donor)):
            pred = sne.tl.predict_perturbation(
                inner, COND, control=CTRL, perturbed=STIM, groupby=DONOR, predict_for=q,
                layer="arcsinh", edit_layer="input", population_key="inner_population",
                inplace=False, progress=False)
            real = inner.layers["arcsinh"][(inner_donor == q) & (inner_cond == STIM)]
            errs.append(metrics.energy_distance(sub(np.asarray(pred.X)), sub(real)))
        errors[k] = float(np.mean(errs))
    del adata.obs["inner_population"], adata.uns["inner_population"]
    return min(errors, key=errors.get), errors


def population_runs(adata, patient, seed, model, type_markers):
    """Predictions within populations: {method: (values, seconds)} and the chosen k."""
    donor, cond = adata.obs[DONOR].to_numpy(), adata.obs[COND].to_numpy()
    fit_on = ~((donor == patient) & (cond == STIM))
    start = time.perf_counter()
    k, errors = choose_k(adata, patient, seed, fit_on, type_markers)
    sne.pp.populations(adata, type_markers, k, fit_on=fit_on, layer="arcsinh", random_state=seed)
    select_s = time.perf_counter() - start
    opts = dict(control=CTRL, perturbed=STIM, groupby=DONOR, predict_for=patient, layer="arcsinh",
                population_key="population", random_state=seed, progress=False, inplace=False)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fallbacks of tiny populations, recorded below
        start = time.perf_counter()
        pred = sne.tl.predict_perturbation(adata, COND, edit_layer="input", **opts)
        out["marker-space quantile edit within populations"] = (
            np.asarray(pred.X), select_s + time.perf_counter() - start)
        start = time.perf_counter()
        pred = sne.tl.predict_perturbation(adata, COND, model=model, **opts)
        out["neuron editing within populations"] = (np.asarray(pred.X), time.perf_counter() - start)
    fallback = dict(pred.uns["predicted_perturbation"]["populations"]["fallback"])
    return out, k, errors, fallback


def recon_report(model, X, donor, cond, patient, names, state):
    """How well the autoencoder reproduces state markers of B cells (EMD of the
    reconstruction to the cells, and R² per marker)."""
    rows = {}
    for label, m in ((f"{patient} Ref", (donor == patient) & (cond == CTRL)),
                     (f"{patient} BCRXL (unseen)", (donor == patient) & (cond == STIM)),
                     ("training BCRXL", (donor != patient) & (cond == STIM))):
        x = X[m][gate(X[m], names) == "B"]
        r = model.decode(model.encode(x))
        r2 = 1 - ((x - r) ** 2).sum(0) / ((x - x.mean(0)) ** 2).sum(0)
        rows[(label, "EMD")] = metrics.emd_per_feature(r[:, state], x[:, state])
        rows[(label, "R2")] = r2[state]
    print("\nReconstruction of B-cell state markers (decode(encode(x)) vs x):")
    print(pd.DataFrame(rows, index=names[state]).round(3).to_string())


def report(df, times, args) -> str:
    methods = list(dict.fromkeys(df.method))
    ne = [m for m in methods if m.startswith("neuron editing")][0]
    per_seed = df.groupby(["method", "seed"], sort=False)[["gated", "B", "T", "other", "ungated",
                                                           "seconds"]].mean()
    agg = per_seed.groupby(level="method", sort=False).agg(["mean", "std"])
    pm = lambda r, c: f"{r[(c, 'mean')]:.3f}" + (f" ± {r[(c, 'std')]:.3f}" if r[(c, "std")] > 0 else "")
    lines = [
        "# BCRXL held-out donor benchmark", "",
        f"`SC_NEURONEDIT_DATA_DIR=/work/shared/data python benchmarks/bcrxl_donors.py {args.cli}` — "
        f"{df.patient.nunique()} patients, neuron editing over seeds {args.seeds}, torch threads "
        f"{torch.get_num_threads()}.",
        "EMD on arcsinh(x/5) of the 14 state markers, within type-marker gates: B = CD20 > 3, "
        "T = CD3 > 3 & CD20 <= 3, other = the rest (predicted cells gated on their Ref values, real "
        "BCRXL cells on theirs). gated = mean over the 3 populations; mean over patients, then "
        "mean ± sd over seeds. Marker-space quantile edit: all 24 markers, patients weighted equally.",
        f"Autoencoder training: {np.mean(times):.1f} ± {np.std(times):.1f} s per patient "
        "(wall clock, this machine, CPU).", "",
        "| method | gated ↓ | B ↓ | T ↓ | other ↓ | ungated ↓ | s per patient | issue's gated / B |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, r in agg.iterrows():
        issue = ("{:.3f} / {:.3f}".format(*ISSUE[m]) if m in ISSUE else "target ≤ {} / ≤ {}".format(*TARGET)
                 if m.startswith("neuron editing") else "(diagnosis)")
        spent = r[("seconds", "mean")]
        lines.append(f"| {m} | " + " | ".join(pm(r, c) for c in ("gated", "B", "T", "other", "ungated"))
                     + f" | {'' if np.isnan(spent) else f'{spent:.1f}'} | {issue} |")
    per_patient = df.groupby(["patient", "method"], sort=False)[["gated", "B"]].mean()
    lines += ["", "## Per patient (neuron editing: mean over seeds)", ""]
    for col in ("gated", "B"):
        tab = per_patient[col].unstack("method")[methods]
        lines += [f"{col}:", "", "| patient | " + " | ".join(methods) + " | best |",
                  "|---" * (len(methods) + 2) + "|"]
        for p, r in tab.iterrows():
            best = r[[*BASELINES, ne]].idxmin()  # decode-form diagnosis rows don't compete
            lines.append(f"| {p} | " + " | ".join(f"{v:.3f}" for v in r) + f" | {best} |")
        lines.append("")
    lines += ["## Checks", ""]
    for col in ("gated", "B"):
        tab = df.pivot_table(index=["patient", "seed"], columns="method", values=col)
        wins = tab[ne] < tab[list(BASELINES)].min(axis=1)
        per_s = wins.groupby(level="seed").sum()
        mean_tab = tab.groupby(level="patient").mean()
        mean_wins = int((mean_tab[ne] < mean_tab[list(BASELINES)].min(axis=1)).sum())
        lines.append(f"- {col}: neuron editing beats every baseline in {mean_wins}/{len(mean_tab)} "
                     f"patients (seed-mean); per seed {', '.join(f'{s}: {n}' for s, n in per_s.items())}")
    for col, t in zip(("gated", "B"), TARGET):
        v = agg.loc[ne, (col, "mean")]
        lines.append(f"- target {col} ≤ {t}: {v:.3f} ({'met' if v <= t else 'NOT met'})")
    pooled_map = BASELINES[-1]
    for m in (m for m in methods if m.endswith("within populations")):
        tab = per_patient.unstack("method")
        beats = {col: int((tab[(col, m)] < tab[(col, pooled_map)]).sum()) for col in ("gated", "B")}
        lines.append(
            f"- {m}: gated {agg.loc[m, ('gated', 'mean')]:.3f} (target ≤ {POPULATION_TARGET[0]}), "
            f"B {agg.loc[m, ('B', 'mean')]:.3f} (target ≤ {POPULATION_TARGET[1]}); beats the pooled "
            f"marker map in {beats['gated']}/{len(tab)} patients gated, {beats['B']}/{len(tab)} on B "
            "cells (seed-mean)")
    return "\n".join(lines) + "\n"


def markdown(df: pd.DataFrame) -> str:
    rows = [list(map(str, df.columns)), ["---"] * df.shape[1], *df.astype(str).to_numpy().tolist()]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patients", nargs="*", default=None)
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "bcrxl_donors.md"))
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override a tl.predict_perturbation option, e.g. decode='\"residual\"' "
                        "(ablations; the default table uses none)")
    p.add_argument("--per-marker", action="store_true",
                   help="also print per population x state marker EMD (seed-mean, all patients)")
    p.add_argument("--recon", action="store_true",
                   help="also print the autoencoder's reconstruction of B-cell state markers")
    p.add_argument("--decode-forms", action="store_true",
                   help="also score the other decode forms on the same model (diagnosis rows)")
    p.add_argument("--rotation", action="store_true",
                   help="also score the marker-space quantile edit in a random rotation of the "
                        "standardised markers, one per seed (diagnosis rows)")
    p.add_argument("--populations", action="store_true",
                   help="also predict within populations from sne.pp.populations (k chosen by an "
                        "inner leave-one-patient-out), input layer and bottleneck")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 because on shared cores more threads oversubscribe "
                        "and train ~5x slower")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    args.cli = " ".join(
        ([f"--patients {' '.join(args.patients)}"] if args.patients else [])
        + ([f"--seeds {' '.join(map(str, args.seeds))}"] if args.seeds != [0, 1, 2] else [])
        + ([f"--set {' '.join(args.set)}"] if args.set else [])
        + [f"--{k.replace('_', '-')}" for k in ("decode_forms", "per_marker", "recon", "rotation",
                                                   "populations") if getattr(args, k)])

    adata = ad.read_h5ad(sne.datasets.data_dir() / "bodenmiller_bcrxl.h5ad")
    sne.pp.arcsinh(adata, 5)
    X, names = adata.layers["arcsinh"], adata.var_names
    state = (adata.var["marker_class"] == "state").to_numpy()
    donor, cond = adata.obs[DONOR].to_numpy().astype(str), adata.obs[COND].to_numpy().astype(str)
    ne = f"neuron editing ({' '.join(args.set) or 'default'})"
    rows, times, detail = [], [], []

    type_markers = (adata.var["marker_class"] == "type").to_numpy()
    chosen = []

    def add(method, patient, seed, P, seconds=np.nan):
        ctrl = X[(donor == patient) & (cond == CTRL)]
        real = X[(donor == patient) & (cond == STIM)]
        per_pop = population_emd(P, gate(ctrl, names), real, gate(real, names), state)
        rows.append(dict(method=method, patient=patient, seed=seed, seconds=seconds,
                         **{g: float(v.mean()) for g, v in per_pop.items()},
                         gated=float(np.mean([v.mean() for v in per_pop.values()])),
                         ungated=float(metrics.emd_per_feature(P[:, state], real[:, state]).mean())))
        detail.extend(dict(method=method, patient=patient, seed=seed, pop=g, marker=m, emd=e)
                      for g, v in per_pop.items() for m, e in zip(names[state], v))

    for patient in args.patients or sorted(np.unique(donor)):
        for method, P in baselines(X, donor, cond, patient).items():
            for seed in args.seeds:  # deterministic; repeated so every method has one row per seed
                add(method, patient, seed, P)
        for seed in args.seeds if args.rotation else ():
            add("quantile edit in a random rotation", patient, seed,
                rotated_quantile_edit(X, donor, cond, patient, seed))
        for seed in args.seeds:
            P, model, seconds = neuron_edit(adata, patient, seed, overrides)
            times.append(seconds)
            add(ne, patient, seed, P, seconds)
            r = rows[-1]
            print(f"{patient} seed {seed}: train {seconds:5.1f}s ({len(model.history.train_loss)} ep)  "
                  f"gated {r['gated']:.3f}  B {r['B']:.3f}  T {r['T']:.3f}  other {r['other']:.3f}",
                  flush=True)
            if args.populations:
                runs, k, errors, fallback = population_runs(adata, patient, seed, model, type_markers)
                chosen.append(dict(patient=patient, seed=seed, k=k, fallback=len(fallback),
                                   **{f"inner energy k={c}": e for c, e in errors.items()}))
                for method, (values, spent) in runs.items():
                    # the bottleneck row reuses the model: count its training too
                    add(method, patient, seed, values,
                        spent + (seconds if method.startswith("neuron") else 0.0))
                    r = rows[-1]
                    print(f"    {method} (k={k}): gated {r['gated']:.3f}  B {r['B']:.3f}", flush=True)
            if args.decode_forms:  # same model and edit, only the decoding differs
                learn = donor != patient
                edit = model.learn_edit(learn & (cond == CTRL), learn & (cond == STIM),
                                        groupby=DONOR, random_state=seed)
                default = overrides.get("decode", "edited_residual")
                for form in sne.NeuronEditor.decode_forms:
                    if form != default:
                        add(f"neuron editing ({form} decode)", patient, seed, model.apply_edit(
                            (donor == patient) & (cond == CTRL), edit, decode=form))
            if args.recon and seed == args.seeds[0]:
                recon_report(model, X, donor, cond, patient, names, state)
    if args.per_marker:
        d = pd.DataFrame(detail).groupby(["pop", "marker", "method"], sort=False).emd.mean()
        print("\nEMD per population x state marker (mean over patients and seeds):")
        print(d.unstack("method").round(3).to_string())
    text = report(pd.DataFrame(rows), times, args)
    if chosen:
        ks = pd.DataFrame(chosen)
        text += ("\n## k of the populations (inner leave-one-patient-out, input layer)\n\n"
                 + markdown(ks.round(4)) + "\n")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
