"""Choose the default decode form by a nested leave-one-type-out on the Kang data.

For an outer held-out type T, the choice may only use the other (training)
types. For each inner type U != T, an autoencoder is trained without the
stimulated cells of T *and* U, the edit is learned on the remaining types and
applied to control U, and each decode form is scored against the real
stimulated U (DEG r², DEG variance r², R² of the change, energy distance).
Forms are ranked per U and metric; the best mean rank is T's choice. The
autoencoder for the pair {T, U} serves both (T outer, U inner) and (U outer,
T inner), so 21 trainings cover all 7 outer folds.

With ``--residual-bins``, ``edited_residual`` enters once per bin count of
the level-conditional residual edit (``learn_edit(residual_bins=)``), ranked
with the other forms; each outer type also gets the bin count that ranks best
among them, with the same leak-free rule.

    python benchmarks/kang_select_decode.py --seed 0
    python benchmarks/kang_select_decode.py --seed 0 --residual-bins 1 3 5 10 20 \
        --out benchmarks/results/kang_select_bins.md

Prints the choice per outer type and writes benchmarks/results/kang_select_decode.md.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

import sc_neuronedit as sne
from sc_neuronedit import metrics

COND, GROUP, CTRL, STIM = "condition", "cell_type", "control", "stimulated"
RANKED = {"r2_deg": False, "r2_var_deg": False, "R2_change": False, "energy": True}


def markdown(df: pd.DataFrame) -> str:
    cols = [df.index.name or ""] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    for idx, row in df.iterrows():
        lines.append(f"| {idx} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "kang_select_decode.md"))
    p.add_argument("--residual-bins", nargs="*", type=int, default=None,
                   help="bin counts of the edited_residual form to rank (default: the package's)")
    args = p.parse_args()
    bins = args.residual_bins or [None]
    candidates = [(form, k) for form in sne.NeuronEditor.decode_forms
                  for k in (bins if form == "edited_residual" else [None])]

    def label(form, k):
        return form if k is None else f"{form} (bins={k})"

    adata = sne.datasets.kang()
    ct, cond = adata.obs[GROUP].to_numpy(), adata.obs[COND].to_numpy()
    types = list(adata.obs[GROUP].cat.categories)
    degs = {t: adata.var_names.get_indexer(metrics.top_degs(adata[ct == t], COND, STIM, CTRL))
            for t in types}
    rows = []
    for T, U in itertools.combinations(types, 2):
        pair = np.isin(ct, [T, U])
        model = sne.NeuronEditor(adata).train(cells=~(pair & (cond == STIM)),
                                              random_state=args.seed, progress=False)
        learn = ~pair
        edits = {k: model.learn_edit(learn & (cond == CTRL), learn & (cond == STIM), groupby=GROUP,
                                     **({} if k is None else {"residual_bins": k})) for k in bins}
        for outer, inner in ((T, U), (U, T)):
            ctrl, real = (ct == inner) & (cond == CTRL), (ct == inner) & (cond == STIM)
            for form, k in candidates:
                P = model.apply_edit(ctrl, edits[k if form == "edited_residual" else bins[0]], decode=form)
                e, _ = metrics.pca_energy_distance(P, adata.X[real], adata.X[ctrl])
                rows.append(dict(
                    outer=outer, inner=inner, decode=label(form, k), energy=e,
                    r2_deg=metrics.r2_means(P, adata.X[real], degs[inner]),
                    r2_var_deg=metrics.r2_variances(P, adata.X[real], degs[inner]),
                    R2_change=metrics.r2_change(P, adata.X[real], adata.X[ctrl]),
                ))
        print(f"pair {T} / {U} done", flush=True)
    df = pd.DataFrame(rows)
    for col, ascending in RANKED.items():
        df[f"rank_{col}"] = df.groupby(["outer", "inner"])[col].rank(ascending=ascending)
    df["mean_rank"] = df[[f"rank_{c}" for c in RANKED]].mean(axis=1)
    per_outer = df.groupby(["outer", "decode"])["mean_rank"].mean().unstack()
    choice = per_outer.idxmin(axis=1)
    binned = [label("edited_residual", k) for k in bins]
    bin_choice = per_outer[binned].idxmin(axis=1)  # first of ties: the fewest bins
    inner_means = df.groupby("decode")[list(RANKED)].mean()
    text = "\n".join([
        "# Decode form chosen by nested leave-one-type-out (Kang)",
        "",
        f"`python benchmarks/kang_select_decode.py --seed {args.seed}`. Each outer type's choice "
        "uses only the other types' stimulated cells.",
        "",
        "Mean rank per outer held-out type (lower is better; 4 metrics x 6 inner types):",
        "",
        markdown(per_outer),
        "",
        "Choice per outer type: " + ", ".join(f"{t}: {c}" for t, c in choice.items()),
        "",
        *(["Bin count per outer type (edited_residual candidates only): "
           + ", ".join(f"{t}: {c}" for t, c in bin_choice.items()), ""] if len(bins) > 1 else []),
        "Inner-fold metrics, mean over all (outer, inner) pairs:",
        "",
        markdown(inner_means),
        "",
    ])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
