"""Is the self-check honest, and does ``edit_layer="auto"`` choose well?

For each held-out group (a BCR-XL patient, or a Kang cell type), train one
default model without the group's perturbed cells (timed), run
``sne.tl.predict_perturbation(self_check=True)`` on it (timed: the check trains
its own 2 extra autoencoders; ``edit_layer="auto"`` would train this very model
when it picks the bottleneck), then predict the held-out group with every
candidate the check considered and score each against the group's real
perturbed cells with the check's own metric (energy distance; features for
BCR-XL, PCA-50 of the group's real cells for Kang). Reported per group and
candidate: the self-check's estimate (mean over its inner groups) beside the
real held-out error; whether the chosen candidate is the one the held-out
truth would have chosen; the rank correlation across candidates.

BCR-XL populations: ``sne.pp.populations`` on the 10 type markers, fitted
without the held-out patient's BCRXL cells, k from the inner
leave-one-patient-out of ``bcrxl_donors.py`` (input layer). BCR-XL is also
scored with ``bcrxl_donors.py``'s gated EMD, Kang with r² of the top-100 DEG
means (the better candidate's r² DEG beside the chosen one's).

    python benchmarks/self_check.py --data bcrxl --seeds 0
    python benchmarks/self_check.py --data kang --seeds 0

Prints tables and writes benchmarks/results/self_check_<data>.md.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bcrxl_donors import markdown
from scipy import stats

import sc_neuronedit as sne
from sc_neuronedit import _self_check, _self_check_choice, metrics

HERE = Path(__file__).parent


def setups(name, how="inner"):
    """The data set, its keys, and a scorer of predictions beyond the check's metric."""
    if name == "bcrxl":
        import bcrxl_donors as bx

        adata = sne.datasets.bodenmiller_bcrxl()
        sne.pp.arcsinh(adata, 5)
        X, names = adata.layers["arcsinh"], adata.var_names
        state = (adata.var["marker_class"] == "state").to_numpy()
        keys = dict(condition=bx.COND, group=bx.DONOR, control=bx.CTRL, perturbed=bx.STIM,
                    layer="arcsinh")

        def extra(P, held):
            donor, cond = adata.obs[bx.DONOR].to_numpy(), adata.obs[bx.COND].to_numpy()
            ctrl, real = X[(donor == held) & (cond == bx.CTRL)], X[(donor == held) & (cond == bx.STIM)]
            per_pop = bx.population_emd(P, bx.gate(ctrl, names), real, bx.gate(real, names), state)
            return {"gated": float(np.mean([v.mean() for v in per_pop.values()])),
                    "B": float(per_pop["B"].mean())}

        def populations(held, seed):
            donor, cond = adata.obs[bx.DONOR].to_numpy(), adata.obs[bx.COND].to_numpy()
            fit_on = ~((donor == held) & (cond == bx.STIM))
            type_markers = (adata.var["marker_class"] == "type").to_numpy()
            if how == "kmeans10":  # a user's own populations: scikit-learn on the training cells
                from sklearn.cluster import KMeans

                T = adata.layers["arcsinh"][:, type_markers]
                km = KMeans(10, n_init=10, random_state=0).fit(T[fit_on])
                adata.obs["population"] = pd.Categorical(km.predict(T).astype(str))
                return "population", 10
            k = 10 if how == "pp10" else bx.choose_k(adata, held, seed, fit_on, type_markers)[0]
            sne.pp.populations(adata, type_markers, k, fit_on=fit_on, layer="arcsinh", random_state=seed)
            return "population", k

        return adata, keys, extra, populations
    adata = sne.datasets.kang()
    keys = dict(condition="condition", group="cell_type", control="control", perturbed="stimulated",
                layer=None)
    degs = {}

    def extra(P, held):
        ct, cond = adata.obs["cell_type"].to_numpy(), adata.obs["condition"].to_numpy()
        if held not in degs:
            degs[held] = metrics.top_degs(adata[ct == held], "condition", "stimulated", "control",
                                          n_genes=100)
        real = adata.X[(ct == held) & (cond == "stimulated")].toarray()
        return {"r2_deg": metrics.r2_means(P, real, adata.var_names.get_indexer(degs[held]))}

    return adata, keys, extra, lambda held, seed: (None, None)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=["bcrxl", "kang"], required=True)
    p.add_argument("--groups", nargs="*", default=None)
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--populations", choices=["inner", "pp10", "kmeans10"], default="inner",
                   help="BCR-XL: k from bcrxl_donors' inner leave-one-out, sne.pp.populations "
                        "with k=10, or scikit-learn KMeans(10) on the type markers")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    adata, keys, extra, populations = setups(args.data, args.populations)
    groups = adata.obs[keys["group"]].to_numpy().astype(str)
    cond = adata.obs[keys["condition"]].to_numpy()
    X = adata.X if keys["layer"] is None else adata.layers[keys["layer"]]
    rows, checks, tables = [], [], []
    for seed in args.seeds:
        for held in args.groups or sorted(np.unique(groups)):
            population_key, k = populations(held, seed)
            opts = dict(control=keys["control"], perturbed=keys["perturbed"], groupby=keys["group"],
                        predict_for=held, layer=keys["layer"], population_key=population_key,
                        random_state=seed, progress=False, inplace=False)
            # One default fit (timed). edit_layer="auto" would train exactly this model when it
            # picks the bottleneck (same cells and seed), so the check runs on it: the extra
            # cost of "auto" is the self-check's own time, plus this fit if it picks the bottleneck.
            # A default run is this fit plus the default prediction on it (timed below).
            start = time.perf_counter()
            model = sne.NeuronEditor(adata, layer=keys["layer"]).train(
                cells=~((groups == held) & (cond == keys["perturbed"])), random_state=seed, progress=False)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                checked = sne.tl.predict_perturbation(adata, keys["condition"], self_check=True,
                                                      model=model, **opts)
            check_s = time.perf_counter() - start
            uns = checked.uns["predicted_perturbation"]
            table, summary = uns["self_check"], uns["self_check_summary"]
            ctrl_rows = np.flatnonzero((groups == held) & (cond == keys["control"]))
            real_rows = np.flatnonzero((groups == held) & (cond == keys["perturbed"]))
            ctrl, real = _dense(X[ctrl_rows]), _dense(X[real_rows])
            space = _self_check.scoring_space(ctrl, real)
            labels = None if population_key is None else tuple(
                adata.obs[population_key].astype(str).to_numpy()[r] for r in (ctrl_rows, real_rows))
            no_change = _self_check.errors(space(ctrl), space(real), labels, seed)
            truth, predictions = {}, {}
            for cand in _self_check.candidates(population_key is not None):
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    pred = sne.tl.predict_perturbation(
                        adata, keys["condition"], edit_layer=cand.edit_layer,
                        model=model if cand.edit_layer == "bottleneck" else None,
                        **{**opts, "population_key": population_key if cand.within else None})
                if cand == _self_check.Candidate("bottleneck", False):  # the default run's edit
                    default_s = fit_s + time.perf_counter() - start
                P = predictions[cand.name] = np.asarray(pred.X)
                # the check's own rule: over all cells, or with populations each weighing the same
                errs = _self_check.errors(space(P), space(real), labels, seed)
                parts = [p for p in errs if p != "all"] or ["all"]
                truth[cand.name] = dict(
                    real_error=float(np.mean([errs[p] for p in parts])),
                    real_skill=float(np.mean([1 - errs[p] / no_change[p] for p in parts])),
                    **extra(P, held))
            # edit_layer="auto" chooses on this very table (it trains the same models)
            default = summary["default"]
            tables.append(table.assign(seed=seed, held_out=held))
            chosen, summary = _self_check_choice.choose(table, default)
            low, high = summary["skill_interval"]
            inner = _self_check.group_skill(table).groupby("candidate")
            for name, t in truth.items():
                rows.append(dict(seed=seed, group=held, candidate=name, k=k,
                                 estimated_error=float(inner["error"].mean()[name]),
                                 estimated_skill=float(inner["skill"].mean()[name]), **t,
                                 chosen=name == chosen))
            frame = pd.DataFrame([r for r in rows if r["seed"] == seed and r["group"] == held])
            best = frame.loc[frame.real_skill.idxmax(), "candidate"]
            rho = stats.spearmanr(frame.estimated_skill, frame.real_skill).statistic
            gain = summary["comparison"].set_index("candidate")
            alt = gain.drop(default)["gain"].idxmax()
            auto_s = check_s + (fit_s if chosen.startswith("bottleneck") else 0.0)
            scores = {**extra(predictions[chosen], held),
                      **{f"default_{c}": v for c, v in extra(predictions[default], held).items()}}
            checks.append(dict(seed=seed, group=held, chosen=chosen, truth_best=best,
                               agree=chosen == best, spearman=rho,
                               best_alternative=alt, alt_gain=float(gain.loc[alt, "gain"]),
                               alt_threshold=float(gain.loc[alt, "threshold"]),
                               expected_skill=summary["expected_skill"], low=low, high=high,
                               real_skill=truth[chosen]["real_skill"],
                               covered=bool(low <= truth[chosen]["real_skill"] <= high),
                               vouched=summary["vouched"],
                               energy=truth[chosen]["real_error"],
                               default_energy=truth[default]["real_error"],
                               auto_s=auto_s, fit_s=fit_s, default_s=default_s,
                               cost_ratio=auto_s / default_s, **scores))
            print(checks[-1], flush=True)
            write(args, pd.DataFrame(rows), pd.DataFrame(checks), pd.concat(tables))


def write(args, df: pd.DataFrame, ck: pd.DataFrame, tables: pd.DataFrame) -> None:
    """The report so far (rewritten after every held-out group)."""
    suffix = "" if args.populations == "inner" else f"_{args.populations}"
    out = Path(args.out or HERE / "results" / f"self_check_{args.data}{suffix}.md")
    df.to_csv(out.with_suffix(".candidates.csv"), index=False)
    ck.to_csv(out.with_suffix(".groups.csv"), index=False)
    tables.to_csv(out.with_suffix(".tables.csv"), index=False)  # every check's own table
    groups = f" --groups {' '.join(args.groups)}" if args.groups else ""
    pops = f" --populations {args.populations}" if args.populations != "inner" else ""
    lines = [f"# Self-check honesty ({args.data})", "",
             f"`python benchmarks/self_check.py --data {args.data} --seeds {' '.join(map(str, args.seeds))}"
             f"{groups}{pops}` — torch threads {args.threads}; {len(ck)} held-out group(s) so far. Estimated "
             "error: the self-check's mean over its inner groups (never scored by a model that saw "
             "their perturbed cells); real error: the same metric on the held-out group. Skill = 1 - "
             "error / no-change error; with populations, both are means over the populations (each "
             "weighing the same), as the check chooses. Cost: the self-check's time (its 2 extra "
             "fits, the inner "
             "predictions, the final prediction) plus the main fit when it picks the bottleneck, "
             "against one default run (the fit, then `predict_perturbation` with the default "
             "options on it), wall clock.", "",
             "## Per held-out group and candidate", "", markdown(df.round(4)), "",
             "## Choice, agreement with the held-out truth, cost", "", markdown(ck.round(3)), "",
             f"- chosen = the held-out truth's best in {int(ck.agree.sum())}/{len(ck)} groups; mean "
             f"Spearman ρ (estimated vs real skill, across candidates) {ck.spearman.mean():.2f}",
             f"- cost of edit_layer='auto': {ck.auto_s.mean():.1f} s vs {ck.default_s.mean():.1f} s for one "
             f"default run ({ck.cost_ratio.mean():.2f}x; max {ck.cost_ratio.max():.2f}x)"]
    score_cols = [c for c in ("gated", "B", "r2_deg") if c in ck]
    lines.append("- the chosen candidate's prediction: "
                 + ", ".join(f"{c} {ck[c].mean():.3f}" for c in score_cols))
    lines.append("- the default call's prediction: "
                 + ", ".join(f"{c} {ck['default_' + c].mean():.3f}" for c in score_cols))
    lines.append(f"- held-out energy distance: auto {ck.energy.mean():.4f}, default "
                 f"{ck.default_energy.mean():.4f} (auto - default {ck.energy.mean() - ck.default_energy.mean():+.4f}); "
                 f"auto worse than default by > 0.001 in {int((ck.energy > ck.default_energy + 1e-3).sum())}"
                 f"/{len(ck)} groups")
    for c in ("gated", "B"):
        if c in ck:
            lines.append(f"- {c} EMD: auto worse than default by > 0.001 in "
                         f"{int((ck[c] > ck['default_' + c] + 1e-3).sum())}/{len(ck)} groups")
    lines.append(f"- the reported {_self_check_choice.INTERVAL_LEVEL:.0%} skill interval covers the real "
                 f"held-out skill of the chosen candidate in {int(ck.covered.sum())}/{len(ck)} groups "
                 f"({ck.covered.mean():.0%}); vouched for {int(ck.vouched.sum())}/{len(ck)}, of which "
                 f"{int((ck.vouched & (ck.real_skill <= 0)).sum())} had real skill <= 0")
    if "r2_deg" in df:
        better = df.groupby(["seed", "group"])["r2_deg"].max()
        chosen = df[df.chosen].set_index(["seed", "group"])["r2_deg"]
        gap = better - chosen
        lines.append(f"- r² DEG of the chosen candidate within 0.01 of the better one in "
                     f"{int((gap <= 0.01).sum())}/{len(gap)} types (largest gap {gap.max():.3f})")
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text, flush=True)


def _dense(M):
    return M.toarray() if hasattr(M, "toarray") else np.asarray(M)


if __name__ == "__main__":
    main()
