"""Command line: ``neuronedit demo`` and ``neuronedit predict``."""

from __future__ import annotations

import argparse
import sys


def _demo(args) -> int:
    import numpy as np

    import sc_neuronedit as sne
    from sc_neuronedit import metrics

    adata = sne.datasets.kang()
    T = args.cell_type
    print(f"Kang PBMCs: {adata.n_obs} cells x {adata.n_vars} genes. Predicting IFN-beta "
          f"stimulated {T} cells without ever showing the model one.")
    sne.tl.predict_perturbation(
        adata, "condition", control="control", perturbed="stimulated", groupby="cell_type",
        predict_for=T, random_state=args.seed, max_epochs=args.max_epochs,
    )
    res = adata.uns["predicted_perturbation"]
    ct, cond = adata.obs["cell_type"].to_numpy(), adata.obs["condition"].to_numpy()
    ctrl, real = (ct == T) & (cond == "control"), (ct == T) & (cond == "stimulated")
    others_c, others_s = (ct != T) & (cond == "control"), (ct != T) & (cond == "stimulated")
    X = adata.X
    pred = adata.layers["predicted_perturbation"][ctrl]
    degs = adata.var_names.get_indexer(
        metrics.top_degs(adata[ct == T], "condition", "stimulated", "control"))
    mean_shift = metrics.mean_shift_prediction(
        X[ctrl], X[others_c], X[others_s], source_groups=ct[others_c], target_groups=ct[others_s])
    rows = {"no change": X[ctrl], "gene-space mean shift": mean_shift, "neuron editing": pred}
    print(f"\ntrained {len(res['history']['train_loss'])} epochs in {res['history']['seconds']:.1f} s; "
          f"{res['outside_fraction']:.1%} of edited activations outside the source range\n")
    print(f"{'method':24s} {'r2 all':>7s} {'r2 DEG':>7s} {'r2 var':>7s} {'energy':>7s}")
    for name, P in rows.items():
        e, floor = metrics.pca_energy_distance(P, X[real], X[ctrl])
        print(f"{name:24s} {metrics.r2_means(P, X[real]):7.3f} {metrics.r2_means(P, X[real], degs):7.3f} "
              f"{metrics.r2_variances(P, X[real], degs):7.3f} {e:7.2f}")
    print(f"(energy distance noise floor: {floor:.2f}; r2 = squared Pearson r of per-gene "
          "means/variances vs the real stimulated cells, DEG = top-100 Wilcoxon genes)")
    for g in ("ISG15", "IFI6", "IFIT1"):
        i = adata.var_names.get_loc(g)
        print(f"  {g:6s} control {X[ctrl][:, i].mean():.2f} -> predicted "
              f"{np.asarray(pred[:, i].mean()):.2f} (real {X[real][:, i].mean():.2f})")
    return 0


def _predict(args) -> int:
    import anndata as ad

    import sc_neuronedit as sne

    adata = ad.read_h5ad(args.input)
    sne.tl.predict_perturbation(
        adata, args.condition_key, control=args.control, perturbed=args.perturbed,
        groupby=args.groupby, predict_for=args.predict_for, layer=args.layer,
        key_added=args.key_added, random_state=args.seed, max_epochs=args.max_epochs,
    )
    adata.write_h5ad(args.output)
    print(f"wrote {args.output}: layers[{args.key_added!r}], obs['{args.key_added}_edited'], "
          f"uns[{args.key_added!r}]")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="neuronedit", description="Neuron editing for single-cell data.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="predict a held-out cell type's IFN-beta response on the Kang data")
    d.add_argument("--cell-type", default="CD14+Mono")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--max-epochs", type=int, default=None, help="default: the package default")
    d.set_defaults(func=_demo)

    q = sub.add_parser("predict", help="predict a perturbation for held-out group(s) of an .h5ad")
    q.add_argument("input")
    q.add_argument("output")
    q.add_argument("--condition-key", required=True)
    q.add_argument("--control", required=True)
    q.add_argument("--perturbed", required=True)
    q.add_argument("--groupby", required=True)
    q.add_argument("--predict-for", required=True, nargs="+")
    q.add_argument("--layer", default=None)
    q.add_argument("--key-added", default="predicted_perturbation")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--max-epochs", type=int, default=None)
    q.set_defaults(func=_predict)

    args = p.parse_args(argv)
    try:
        return args.func(args)
    except (KeyError, ValueError, FileNotFoundError, ConnectionError) as err:
        print(f"neuronedit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
