"""Command line: ``neuronedit demo``, ``predict``, ``batch-correct`` and ``combination``."""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from pathlib import Path

_DEMO_HELP = """\
example (offline, with the converted data in a folder):

  SC_NEURONEDIT_DATA_DIR=../shared/data neuronedit demo --cell-type CD4T --plot cd4t.png

trains an autoencoder without the held-out type's stimulated cells, predicts them from
its control cells, prints scores against the real stimulated cells next to two baselines
and writes a plot of predicted vs observed per-gene means.

exit status: 0 success, 2 usage or input error (message on stderr)
"""


def _demo(args) -> int:
    import numpy as np

    import sc_neuronedit as sne
    from sc_neuronedit import metrics

    plot = Path(args.plot)
    if not plot.parent.is_dir():
        raise FileNotFoundError(f"--plot: the folder {str(plot.parent)!r} does not exist")
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
    import matplotlib

    matplotlib.use("Agg")  # a file, never a window: the demo also runs on headless machines
    import matplotlib.pyplot as plt

    plt.close(sne.pl.reg_mean(adata, labels=10, save=plot))  # its title names the held-out type
    print(f"\nwrote {plot} (per-gene means, predicted vs observed; top DEGs labelled)")
    return 0


def _read_input(path):
    """The input .h5ad, with a one-line error if it is missing."""
    import anndata as ad

    if not Path(path).is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    return ad.read_h5ad(path)


def _check_output(input_path, output_path) -> None:
    """Fail before any work if the output cannot be written or is the input."""
    out = Path(output_path)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output directory does not exist: {out.parent}")
    if out.exists() and Path(input_path).exists() and os.path.samefile(out, input_path):
        raise ValueError(f"output {output_path} is the input file; give a new output path "
                         "(the input is never modified).")


def _write_atomic(adata, output_path) -> None:
    """Write to a temporary file next to ``output_path``, then rename it into place,
    so that a failure or an interrupt never leaves a partial output."""
    out = Path(output_path)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial.h5ad")
    try:
        adata.write_h5ad(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _predict(args) -> int:
    import numpy as np

    import sc_neuronedit as sne

    _check_output(args.input, args.output)
    adata = _read_input(args.input)
    _check_obs_columns(adata, {"--condition-key": args.condition_key, "--groupby": args.groupby})
    if args.layer is not None and args.layer not in adata.layers:
        raise KeyError(f"--layer: {args.layer!r} is not a layer of the input; "
                       f"available: {_shown(adata.layers.keys()) or '(none)'}.")
    values = {name: _obs_value(adata, args.condition_key, text, f"--{name}")
              for name, text in (("control", args.control), ("perturbed", args.perturbed))}
    predict_for = [_obs_value(adata, args.groupby, text, "--predict-for") for text in args.predict_for]
    mask = _var_mask(adata, args)
    sne.tl.predict_perturbation(
        adata, args.condition_key, **values, groupby=args.groupby, predict_for=predict_for,
        layer=args.layer, mask_var=mask, nonnegative=args.nonnegative, key_added=args.key_added,
        random_state=args.seed, max_epochs=args.max_epochs,
    )
    _write_atomic(adata, args.output)
    res, key = adata.uns[args.key_added], args.key_added
    print(f"predicted {res['n_edited']} {values['control']!r} cells of "
          f"{', '.join(map(str, predict_for))} (.obs[{args.groupby!r}]) as {values['perturbed']!r}, "
          f"from the edit learned on {len(res['training_groups'])} other groups: "
          f"{_shown(res['training_groups'])}")
    print(f"  edit: {res['n_source']} {values['control']!r} -> {res['n_target']} "
          f"{values['perturbed']!r} cells; {res['outside_fraction']:.1%} of the edited activations "
          "outside the range of the source cells (warned above 10 %)")
    _print_training(res["history"], adata.n_vars if mask is None else int(np.sum(mask)), adata.n_vars)
    print(f"  values below zero: nonnegative={args.nonnegative!r}")
    print(f"wrote {args.output}: layers[{key!r}], obs['{key}_edited'], uns[{key!r}]")
    return 0


def _print_training(history, used: int, n_vars: int) -> None:
    """One line on the autoencoder's training: epochs, early stop, time, features."""
    epochs = len(history["train_loss"])
    stop = (f"stopped early, best epoch {history['best_epoch'] + 1}" if history["stopped_early"]
            else f"best epoch {history['best_epoch'] + 1}")
    print(f"trained {epochs} epochs ({stop}) in {history['seconds']:.1f} s on {used} of "
          f"{n_vars} features")


PREDICT_DESCRIPTION = """Predict how held-out group(s) of an .h5ad respond to a perturbation nobody measured
in them. The autoencoder is trained on every cell except the perturbed cells of
--predict-for; the edit control -> perturbed is learned on the other groups (each
weighing the same) and applied to the control cells of --predict-for."""

PREDICT_EXAMPLE = """example (Kang PBMCs: predict IFN-beta stimulated CD14+ monocytes from control ones,
with the 2,000 most variable genes in .var['highly_variable']):

  neuronedit predict kang.h5ad predicted.h5ad --condition-key condition \
      --control control --perturbed stimulated --groupby cell_type \
      --predict-for CD14+Mono --mask-var highly_variable

the input must be log-normalised (scanpy: sc.pp.normalize_total, sc.pp.log1p), or
arcsinh-transformed cytometry; a True/False .var column for --mask-var comes from
e.g. sc.pp.highly_variable_genes(adata, n_top_genes=2000).

output: the input plus layers[KEY] (predicted values for the control cells of
--predict-for; other rows keep their input), obs['KEY_edited'] and uns[KEY]
(parameters, training history, edit statistics), KEY = --key-added. The file is
written under a temporary name and renamed: never partially.

exit status: 0 success, 2 usage or input error (message on stderr)
"""


_TRUE, _FALSE = ("true", "1"), ("false", "0")


def _shown(values, limit: int = 20, sort: bool = True) -> str:
    values = sorted(map(str, values)) if sort else list(map(str, values))
    return ", ".join(values[:limit]) + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _obs_value(adata, key: str, text: str, option: str):
    """``text`` from the command line as the matching value of ``adata.obs[key]``.

    Bool columns take True/False/1/0 (any case), numeric columns a number,
    other columns the value as written. Unknown values raise ``ValueError``
    naming the column's values.
    """
    import pandas as pd

    if key not in adata.obs.columns:
        raise KeyError(f"{key!r} is not a column of .obs; available: {_shown(adata.obs.columns)}.")
    col = adata.obs[key]
    dtype = col.cat.categories.dtype if isinstance(col.dtype, pd.CategoricalDtype) else col.dtype
    present = col.dropna().unique().tolist()
    if pd.api.types.is_bool_dtype(dtype):
        word = text.strip().lower()
        matches = [v for v in present if (word in _TRUE and v) or (word in _FALSE and not v)]
        hint = " (bool column: give True/False or 1/0)"
    elif pd.api.types.is_numeric_dtype(dtype):
        try:
            number = float(text)
        except ValueError:
            number = None
        matches = [v for v in present if number is not None and v == number]
        hint = f" ({dtype} column: give a number)"
    else:
        matches = [v for v in present if str(v) == text]
        hint = ""
    if not matches:
        raise ValueError(f"{option} {text!r} is not a value of .obs[{key!r}]{hint}; "
                         f"available: {_shown(present)}.")
    return matches[0]


def _check_obs_columns(adata, columns: dict) -> None:
    """Raise naming the option whose ``.obs`` column does not exist."""
    for option, key in columns.items():
        if key not in adata.obs.columns:
            raise KeyError(f"{option}: {key!r} is not a column of .obs; "
                           f"available: {_shown(adata.obs.columns)}.")


def _var_mask(adata, args):
    """The ``mask_var`` for the tl function from --mask-var / --var-nonempty."""
    import pandas as pd

    column = args.mask_var or args.var_nonempty
    if column is None:
        return None
    option = "--mask-var" if args.mask_var else "--var-nonempty"
    if column not in adata.var.columns:
        raise KeyError(f"{option}: {column!r} is not a column of .var; "
                       f"available: {_shown(adata.var.columns) or '(none)'}.")
    col = adata.var[column]
    if args.mask_var:
        if not pd.api.types.is_bool_dtype(col.dtype):
            raise ValueError(f"--mask-var: .var[{column!r}] must be True/False, got {col.dtype}; "
                             f"for a column of names (empty = leave out) use --var-nonempty {column}.")
        mask = col.to_numpy(dtype=bool)
    else:
        mask = (col.notna() & (col.astype(str).str.strip() != "")).to_numpy()
    if not mask.any():
        raise ValueError(f"{option} {column}: no feature selected.")
    return mask


def _batch_correct(args) -> int:
    import numpy as np

    import sc_neuronedit as sne

    _check_output(args.input, args.output)
    adata = _read_input(args.input)
    _check_obs_columns(adata, {"--batch-key": args.batch_key, "--reference-key": args.reference_key})
    reference_value = _obs_value(adata, args.reference_key, args.reference_value,
                                 "--reference-value")
    reference_batch = (None if args.reference_batch is None else
                       _obs_value(adata, args.batch_key, args.reference_batch, "--reference-batch"))
    mask = _var_mask(adata, args)
    layer = args.layer
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"--layer: {layer!r} is not a layer of the input; "
                       f"available: {_shown(adata.layers.keys()) or '(none)'}.")
    if args.arcsinh is not None:
        if "arcsinh" in adata.layers:
            raise ValueError("the input already has layers['arcsinh']; to correct it, drop "
                             "--arcsinh and pass --layer arcsinh.")
        sne.pp.arcsinh(adata, args.arcsinh, layer=layer, key_added="arcsinh")
        layer = "arcsinh"
    sne.tl.batch_correct(
        adata, args.batch_key, reference_key=args.reference_key, reference_value=reference_value,
        reference_batch=reference_batch, layer=layer, mask_var=mask,
        min_reference_cells=args.min_reference_cells, key_added=args.key_added,
        nonnegative=args.nonnegative, max_epochs=args.max_epochs, random_state=args.seed,
    )
    _write_atomic(adata, args.output)

    res, key = adata.uns[args.key_added], args.key_added
    batches = adata.obs[args.batch_key].to_numpy()
    reference = adata.obs[args.reference_key].to_numpy() == reference_value
    goal = ("the batch-averaged reference (every batch's reference quantiles averaged)"
            if reference_batch is None
            else f"the reference cells of batch {reference_batch}")
    source = "X" if args.layer is None else f"layers[{args.layer!r}]"
    if args.arcsinh is not None:
        source = f"layers['arcsinh'] = arcsinh({source} / {args.arcsinh:g})"
    levels = list(dict.fromkeys(batches.tolist()))
    print(f"corrected {len(res['batches'])} of {len(levels)} batches (.obs[{args.batch_key!r}]) "
          f"onto {goal} (.obs[{args.reference_key!r}] == {reference_value!r}); input: {source}")
    width = max(len("batch"), *(len(str(b)) for b in levels))
    print(f"  {'batch':{width}s} {'cells':>7s} {'reference cells':>15s} {'outside range':>13s}")
    for b in levels:
        n, n_ref = int((batches == b).sum()), int((reference & (batches == b)).sum())
        stats = res["batches"].get(str(b))
        outside = "(reference batch, unchanged)" if stats is None else f"{stats['outside_fraction']:13.1%}"
        print(f"  {b!s:{width}s} {n:7d} {n_ref:15d} {outside}")
    print("  (outside range: share of edited activations beyond the range of the batch's reference cells)")
    checked = res.get("self_check_summary")
    if checked is not None:
        low, high = checked["skill_interval"]
        print(f"self-check (each batch's reference cells split in half): {checked['chosen']}; "
              f"spread gap {checked['expected_spread_gap']:.3f} (uncorrected "
              f"{checked['no_change_spread_gap']:.3f}), skill {checked['expected_skill']:.2f} "
              f"({checked['interval_level']:.0%} interval {low:.2f} to {high:.2f})")
    if res["params"].get("edit_layer") == "input":
        print("edited the markers themselves (input layer): the autoencoder trained for the "
              "check is not used")
    else:
        _print_training(res["history"], adata.n_vars if mask is None else int(np.sum(mask)),
                        adata.n_vars)
    if mask is not None and not mask.all():
        print(f"passed through unchanged: {_shown(adata.var_names[~mask], sort=False)}")
    made = ["layers['arcsinh']"] if args.arcsinh is not None else []
    print(f"wrote {args.output}: {', '.join(made + [f'layers[{key!r}]'])}, "
          f"obs['{key}_edited'], uns[{key!r}]")
    return 0


BATCH_DESCRIPTION = """\
Remove batch effects from an .h5ad with a reference sample that was run in
every batch. One autoencoder is trained on all cells; per batch, the edit from
its reference cells to the goal (the reference cells of all batches pooled, or
those of --reference-batch) is applied to all its cells."""

BATCH_EXAMPLE = """\
example (CyTOF; the same control sample is in every batch, marked by
.obs['reference'] == True; correct arcsinh(x/5) of the channels that have a
name in .var['marker'], the others pass through unchanged):

  neuronedit batch-correct raw.h5ad corrected.h5ad --batch-key batch \\
      --reference-key reference --reference-value True \\
      --arcsinh 5 --var-nonempty marker

named channels often include barcodes, DNA and bead channels, which are not
biology to correct; to leave them out, add a True/False .var column and use
--mask-var:

  python -c "import anndata as ad; a = ad.read_h5ad('raw.h5ad'); \\
  m = a.var['marker'].astype(str); \\
  a.var['use'] = (m != '') & ~m.str.match(r'^(BC\\d|DNA\\d|beadDist)$'); \\
  a.write_h5ad('raw_use.h5ad')"
  neuronedit batch-correct raw_use.h5ad corrected.h5ad ... --mask-var use

output: the input plus layers[KEY] (corrected values; cells of --reference-batch
keep their input), obs['KEY_edited'] and uns[KEY] (parameters, training history,
per-batch statistics), KEY = --key-added; with --arcsinh also layers['arcsinh'].
The file is written under a temporary name and renamed: never partially.

exit status: 0 success, 2 usage or input error (message on stderr)
"""


def _combination(args) -> int:
    import sc_neuronedit as sne

    _check_output(args.input, args.output)
    adata = _read_input(args.input)
    _check_obs_columns(adata, {"--condition-key": args.condition_key})
    values = {name: _obs_value(adata, args.condition_key, text, f"--{name.replace('_', '-')}")
              for name, text in (("control", args.control), ("drug_a", args.drug_a),
                                 ("drug_b", args.drug_b), ("combination", args.combination))
              if text is not None}
    if args.layer is not None and args.layer not in adata.layers:
        raise KeyError(f"--layer: {args.layer!r} is not a layer of the input; "
                       f"available: {_shown(adata.layers.keys()) or '(none)'}.")
    sne.tl.predict_combination(
        adata, args.condition_key, **values, layer=args.layer, mask_var=_var_mask(adata, args),
        key_added=args.key_added, n_resamples=args.n_resamples, nonnegative=args.nonnegative,
        max_epochs=args.max_epochs, random_state=args.seed,
    )
    _write_atomic(adata, args.output)
    res, key = adata.uns[args.key_added], args.key_added
    print(f"routes agree: energy distance between them = "
          f"{res['agreement']['route_energy_ratio']:.2f} x the single-drug effect size")
    if "summary" in res:
        row = res["summary"].iloc[0]
        top = res["mean_shift"].iloc[0].abs().sort_values(ascending=False).index[:5]
        print(f"synergy of {res['summary'].index[0]}: energy score {row['energy_score']:.2f}, "
              f"p = {row['pvalue']:.2g} (Bonferroni over features)")
        for f in top:
            print(f"  {f:12s} observed - predicted {res['mean_shift'].iloc[0][f]:+.3f}  "
                  f"q = {res['qvalue'].iloc[0][f]:.2g}  Bliss excess {res['bliss_excess'].iloc[0][f]:+.2f}")
    print(f"wrote {args.output}: layers[{key!r}], obs['{key}_edited'], obs['{key}_route'], uns[{key!r}]")
    return 0


COMBINATION_EXAMPLE = """\
example (control, two single drugs and their measured combination in .obs['condition']):

  neuronedit combination screen.h5ad predicted.h5ad --condition-key condition \\
      --control DMSO --drug-a drugA --drug-b drugB --combination drugA+drugB

without --combination only the no-interaction prediction is written; with it,
uns[KEY] also holds the synergy tables (mean_shift, median_shift, pvalue, qvalue,
bliss_excess; summary per combination).

exit status: 0 success, 2 usage or input error (message on stderr)
"""


def _add_feature_options(parser) -> None:
    """--mask-var / --var-nonempty, read by :func:`_var_mask`."""
    m = parser.add_mutually_exclusive_group()
    m.add_argument("--mask-var", default=None, metavar="COLUMN",
                   help="True/False .var column: features the model sees; the others pass "
                        "through unchanged (default: all features)")
    m.add_argument("--var-nonempty", default=None, metavar="COLUMN",
                   help="use the features whose .var[COLUMN] is not empty, e.g. channels with a "
                        "marker name; the others pass through unchanged")


def _add_common_options(parser, *, key_added: str, nonnegative: str) -> None:
    """--key-added, --nonnegative, --seed and --max-epochs, the same for every tool."""
    parser.add_argument("--key-added", default=key_added, metavar="KEY",
                        help="name of the layer and .uns entry written (default: %(default)s)")
    parser.add_argument("--nonnegative", default=nonnegative, choices=("clip", "keep_zeros", "off"),
                        help="predictions of features without negative input values: clip at "
                             "zero, also keep input zeros at zero, or leave as decoded "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--max-epochs", type=int, default=None, metavar="N",
                        help="training epochs (default: the package default, 30, with early stopping)")


def main(argv=None) -> int:
    from sc_neuronedit import __version__

    p = argparse.ArgumentParser(prog="neuronedit", description="Neuron editing for single-cell data.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="predict a held-out cell type's IFN-beta response on the Kang data",
                       epilog=_DEMO_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--cell-type", default="CD14+Mono",
                   help="the Kang cell type whose stimulated cells are held out (default: %(default)s)")
    d.add_argument("--plot", default="neuronedit_demo.png", metavar="PNG",
                   help="where to write the predicted vs observed means plot (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    d.add_argument("--max-epochs", type=int, default=None, metavar="N",
                   help="training epochs (default: the package default, 30, with early stopping)")
    d.set_defaults(func=_demo)

    q = sub.add_parser("predict", help="predict a perturbation for held-out group(s) of an .h5ad",
                       description=PREDICT_DESCRIPTION, epilog=PREDICT_EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("input", help="input .h5ad (log-normalised or arcsinh values)")
    q.add_argument("output", help="output .h5ad (not the input file)")
    q.add_argument("--condition-key", required=True, metavar="COLUMN",
                   help=".obs column of conditions")
    q.add_argument("--control", required=True, metavar="VALUE",
                   help="value of --condition-key for unperturbed cells")
    q.add_argument("--perturbed", required=True, metavar="VALUE",
                   help="value of --condition-key for perturbed cells")
    q.add_argument("--groupby", required=True, metavar="COLUMN",
                   help=".obs column of groups, e.g. cell types")
    q.add_argument("--predict-for", required=True, nargs="+", metavar="GROUP",
                   help="group(s) of --groupby to predict; their perturbed cells, if any, are never used")
    q.add_argument("--layer", default=None, metavar="LAYER", help="input layer; default X")
    _add_feature_options(q)
    _add_common_options(q, key_added="predicted_perturbation", nonnegative="clip")
    q.set_defaults(func=_predict)

    b = sub.add_parser(
        "batch-correct", help="remove batch effects learned from a reference sample run in every batch",
        description=BATCH_DESCRIPTION, epilog=BATCH_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("input", help="input .h5ad")
    b.add_argument("output", help="output .h5ad (not the input file)")
    b.add_argument("--batch-key", required=True, metavar="COLUMN", help=".obs column of batches")
    b.add_argument("--reference-key", required=True, metavar="COLUMN",
                   help=".obs column marking the reference (spike-in) cells")
    b.add_argument("--reference-value", required=True, metavar="VALUE",
                   help="value of --reference-key for the reference cells; read as the column's "
                        "type (bool: True/False/1/0, numeric: a number)")
    b.add_argument("--reference-batch", default=None, metavar="BATCH",
                   help="batch to align to (left unchanged); default: the reference cells of all "
                        "batches pooled, each batch weighing the same")
    b.add_argument("--layer", default=None, metavar="LAYER", help="input layer; default X")
    b.add_argument("--arcsinh", type=float, default=None, metavar="COFACTOR",
                   help="first write layers['arcsinh'] = arcsinh(x / COFACTOR) of the input "
                        "and correct that (5 for CyTOF, ~150 for flow)")
    _add_feature_options(b)
    b.add_argument("--min-reference-cells", type=int, default=50, metavar="N",
                   help="fewer reference cells in a batch is an error (default: %(default)s)")
    _add_common_options(b, key_added="batch_corrected", nonnegative="keep_zeros")
    b.set_defaults(func=_batch_correct)

    c = sub.add_parser(
        "combination", help="predict a drug combination from the single drugs; score synergy",
        epilog=COMBINATION_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("input", help="input .h5ad")
    c.add_argument("output", help="output .h5ad (not the input file)")
    c.add_argument("--condition-key", required=True, metavar="COLUMN", help=".obs column of conditions")
    c.add_argument("--control", required=True, metavar="VALUE", help="condition of untreated cells")
    c.add_argument("--drug-a", required=True, metavar="VALUE", help="condition of drug A alone")
    c.add_argument("--drug-b", required=True, metavar="VALUE", help="condition of drug B alone")
    c.add_argument("--combination", default=None, metavar="VALUE",
                   help="condition of the measured combination, if any: then synergy is scored")
    c.add_argument("--layer", default=None, metavar="LAYER", help="input layer; default X")
    _add_feature_options(c)
    c.add_argument("--n-resamples", type=int, default=100, metavar="N",
                   help="bootstrap reruns for the p-values (default: %(default)s)")
    _add_common_options(c, key_added="combination", nonnegative="clip")
    c.set_defaults(func=_combination)

    args = p.parse_args(argv)
    try:
        return args.func(args)
    except (KeyError, ValueError, OSError) as err:
        # KeyError's str() quotes its message; print the message itself.
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"neuronedit: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neuronedit: interrupted; nothing written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
