from __future__ import annotations

import numpy as np

from .. import _anndata as _ad
from .._edit import quantile_map
from .._learning import RESIDUAL_BINS, group_weights, subsample
from .._matrix import take_rows
from .._warn import warn
from ._checks import check_input
from ._nonnegative import check_policy
from ._pipeline import Pipeline, population_record, resolve_populations, trained_model
from ._results import warn_outside, write_result
from ._self_check import batch_check, chosen_options, resolve_edit_layer

#: How ``reference_batch=None`` pools the batches' reference samples into one goal.
POOLED_GOALS = ("average", "mixture")


def batch_correct(
    adata,
    batch_key: str,
    *,
    reference_key: str,
    reference_value,
    reference_batch=None,
    layer: str | None = None,
    mask_var=None,
    population_key: str | None = None,
    edit_layer: int | str = "auto",
    self_check: bool = False,
    min_reference_cells: int = 50,
    key_added: str = "batch_corrected",
    inplace: bool = True,
    decode: str = "edited_residual",
    residual_bins: int = RESIDUAL_BINS,
    calibrate: bool = False,
    pooled_goal: str = "average",
    nonnegative: str = "keep_zeros",
    keep_zeros: bool | None = None,
    n_quantiles: int = 100,
    max_epochs: int | None = None,
    model_kwargs: dict | None = None,
    train_kwargs: dict | None = None,
    device: str = "auto",
    random_state: int = 0,
    progress: bool = True,
):
    """Remove batch effects learned from a reference sample run in every batch.

    One autoencoder is trained on all cells. For each batch ``b``, the edit
    from the reference cells of ``b`` to the goal is applied to every cell of
    ``b``. The goal is the reference cells of ``reference_batch`` (whose cells
    are then left unchanged), or, with ``reference_batch=None``, the
    batch-averaged reference (see ``pooled_goal``).

    What a correction should achieve: the reference sample looks the same in
    every batch -- in location and in spread, since a batch effect changes both
    (on the Gates data, volunteer 2's per-marker spread differs between batches
    by 19 % on average) -- while the differences between samples within a
    batch (the biology) are kept. :func:`sc_neuronedit.metrics.spread_gap`
    measures the first for spreads; the self-check guards it.

    Parameters
    ----------
    adata
        Annotated data matrix, e.g. ``arcsinh``-transformed cytometry (see
        :func:`sc_neuronedit.pp.arcsinh`).
    batch_key
        ``.obs`` column of batches.
    reference_key, reference_value
        ``.obs`` column and value(s) marking the reference (spike-in) cells.
    reference_batch
        Batch to align to; ``None`` aligns to the batch-averaged reference (``pooled_goal``).
    layer, mask_var
        Input layer and the features the autoencoder sees (e.g. marker
        channels, not Time or barcodes); other features pass through.
    population_key
        ``.obs`` column of cell populations: each batch's edit is then learned
        within each population, from that population's reference cells to the
        goal's, and each cell takes its own population's edit (a population
        with fewer than 20 reference cells in a batch, or in the goal, takes
        the batch's pooled edit, with a warning). Pays when the batch effect
        differs between populations; when it is mostly global, as in the
        Gates data, pooled edits learn from more cells.
    edit_layer
        ``"auto"`` (default): the self-check's choice among the bottleneck and
        the input layer (see ``self_check``); ``"bottleneck"``, a hidden layer's
        index, or ``"input"``: a per-marker quantile map from the batch's
        reference cells to the goal's, with no autoencoder, as in
        :func:`neuron_edit`. Unlike the prediction tools, batch correction
        checks by default: its check needs no extra autoencoder (the input
        layer has none; the bottleneck's model is the one trained anyway), and
        a fixed layer can fail the job outright -- on the Gates data the
        bottleneck widened the gap between the batches' spreads on held-out
        reference cells (every decode form and level-bin setting alike; on the
        held-out volunteer too, ``benchmarks/results/batch_gates.md``), which the
        check sees and avoids.
    self_check
        Estimate how well each candidate (input layer or bottleneck, pooled or
        within populations) corrects, on the reference cells alone (implied by
        ``edit_layer="auto"``; no extra autoencoder). Leaving a batch out would
        remove the reference cells its own correction needs, so each batch's
        reference cells are split in half: the edit is learned on one half and
        the other half is scored twice: its distribution error against the
        goal's other half (energy distance; skill as in
        :func:`predict_perturbation`) and its spread gap
        (:func:`sc_neuronedit.metrics.spread_gap` against the goal's spread).
        A candidate whose spread gap is larger than the uncorrected one's makes
        the batches' spreads less alike and is not chosen; among the others the
        default (bottleneck, pooled) stays unless one is clearly better in skill,
        paired over the batches (one-sided t at 5 %), without a larger spread gap
        (see :func:`sc_neuronedit._self_check_batches.choose_for_batches`). The proxy is
        optimistic: its held-out half comes from the very sample that taught the
        edit, where the real correction is applied to other samples.
    min_reference_cells
        Fewer reference cells in a batch is an error, not a silent skip.
    calibrate
        After decoding, match each feature of the batch's edited reference
        cells to the goal's reference cells by a per-feature quantile map, and
        apply that map to every cell of the batch. The decoder of an edited
        code reproduces the goal's distributions only approximately; this
        removes what is left, using reference cells only. Off by default:
        on reference cells alone (``benchmarks/batch_select.py``: edits learned
        on T cells, scored on the other cells, and the reverse) it transferred
        worse than the uncalibrated edit, as a map fitted to the reference's
        value range extrapolates flatly to cells outside it.
    pooled_goal
        With ``reference_batch=None``, what "the batch-averaged reference" is.
        ``"average"`` (default): each batch is corrected towards every batch's
        reference in turn and the corrections are averaged; per feature that is
        the monotone map onto the average of the batches' reference quantiles,
        the distribution whose location and spread are the batches' averages.
        ``"mixture"``: the reference cells of all batches pooled, each batch
        weighing the same; the mixture is wider than any batch by the very
        shifts between batches, so every corrected batch takes on that spread
        (on the Gates data its spread gap was larger, see
        ``benchmarks/results/batch_gates.md``). ``"average"`` costs one edit per batch
        pair instead of one per batch.
    nonnegative
        As in :func:`neuron_edit`, but ``"keep_zeros"`` by default: in features
        without negative input values (counts, ``arcsinh`` of counts), an
        input zero stays zero and outputs are clipped at zero. A zero count
        stays zero under the multiplicative intensity change that a batch
        effect is, but a decoder spreads the point mass at zero into a cloud,
        which inflates the spread of markers that most cells lack.
    keep_zeros
        Deprecated spelling of ``nonnegative``: ``True`` is
        ``nonnegative="keep_zeros"``, ``False`` is ``nonnegative="off"``.
    key_added, inplace, decode, residual_bins, n_quantiles
        As in :func:`neuron_edit`.
    max_epochs, model_kwargs, train_kwargs, device, random_state, progress
        As in :func:`neuron_edit`.

    Returns
    -------
    With ``inplace=True``, ``None``, and sets ``adata.layers[key_added]``
    (corrected values; cells of ``reference_batch`` keep their input),
    ``adata.obs[f"{key_added}_edited"]`` and ``adata.uns[key_added]``
    (``params``, ``history``, ``batches`` with each batch's edit statistics,
    ``outside_fraction`` and, with ``population_key``, its ``populations``).
    With ``inplace=False``, an AnnData of the corrected cells.

    Examples
    --------
    The CytoNorm Gates controls: volunteer 1 (``reference``) was run in all 4
    batches. Model the marker channels only (not barcodes, DNA or beads):

    >>> import sc_neuronedit as sne
    >>> cytof = sne.datasets.cytonorm_gates()
    >>> sne.pp.arcsinh(cytof, 5)
    >>> marker = cytof.var["marker"].astype(str)
    >>> technical = marker.str.match("^BC[0-9]$") | marker.isin(["DNA1", "DNA2", "beadDist"])
    >>> cytof.var["marker_channel"] = (marker != "") & ~technical
    >>> sne.tl.batch_correct(cytof, "batch", reference_key="reference", reference_value=True,
    ...                      layer="arcsinh", mask_var="marker_channel", random_state=0,
    ...                      progress=False)
    >>> cytof.layers["batch_corrected"].shape
    (8000, 55)
    """
    from scanpy import logging as logg

    X_in = check_input(adata, layer=layer, key_added=key_added, writes="all" if inplace else None)
    nonnegative = _from_keep_zeros(keep_zeros, nonnegative)
    if pooled_goal not in POOLED_GOALS:
        raise ValueError(f"pooled_goal must be one of {POOLED_GOALS}, got {pooled_goal!r}.")
    batches = _ad.resolve_groups(adata, batch_key, name="batch_key")
    _ad.resolve_groups(adata, reference_key, name="reference_key")
    populations = resolve_populations(adata, population_key, groupby=batch_key)
    reference = _ad.resolve_selection(adata, {reference_key: reference_value}, name="reference_value")
    levels = list(dict.fromkeys(batches.tolist()))
    if reference_batch is not None and reference_batch not in levels:
        raise ValueError(f"reference_batch={reference_batch!r} not in adata.obs[{batch_key!r}]; "
                         f"available: {', '.join(map(str, levels))}.")
    if reference_batch is not None and len(levels) == 1:
        raise ValueError(f"adata.obs[{batch_key!r}] holds only the reference batch "
                         f"{reference_batch!r}: there is no other batch to correct.")
    counts = {b: int((reference & (batches == b)).sum()) for b in levels}
    few = {b: n for b, n in counts.items() if n < min_reference_cells}
    if few:
        raise ValueError(
            f"Batches with fewer than {min_reference_cells} reference cells "
            f"({reference_key}={reference_value!r}): {few}. Every batch needs its reference "
            "sample; drop those batches or lower min_reference_cells."
        )
    start = logg.info(f"batch correction of {len(levels)} batches from reference cells")
    edit_layer, self_check = resolve_edit_layer(edit_layer, self_check)
    model = trained_model(adata, cells=None, layer=layer, mask_var=mask_var,
                          edit_layer="bottleneck" if edit_layer == "auto" else edit_layer,
                          max_epochs=max_epochs, model_kwargs=model_kwargs,
                          train_kwargs=train_kwargs, device=device, random_state=random_state,
                          progress=progress)
    features = model.feature_mask
    features = np.ones(adata.n_vars, bool) if features is None else features

    def pipeline(model):
        return Pipeline(model, X_in, layer=layer, decode=decode, n_quantiles=n_quantiles,
                        residual_bins=residual_bins, nonnegative=nonnegative,
                        random_state=random_state)

    run = pipeline(model)
    checked = None
    if self_check:
        checked = batch_check(adata, reference=reference, batches=batches, goal_batch=reference_batch,
                              populations=populations, model=model, layer=layer, mask_var=mask_var,
                              decode=decode, n_quantiles=n_quantiles, residual_bins=residual_bins,
                              random_state=random_state, device=device,
                              finish=run.finish,  # the policy the output goes through
                              pooled_goal=pooled_goal)
        if edit_layer == "auto":
            edit_layer, populations = chosen_options(checked[1], populations)
            if edit_layer == "input":
                model = checked[2]
                run = pipeline(model)

    goals = _goals(reference, batches, levels, reference_batch, pooled_goal)
    goal_values = [(take_rows(X_in, idx)[:, features], None if groups is None else
                    group_weights(batches[idx]))
                   for idx, groups in ((_subsample(np.flatnonzero(g), random_state), groups)
                                       for g, groups in goals)]
    labels = None if populations is None else populations.astype(str)
    rows, values, per_batch = [], [], {}
    for b in levels:
        if b == reference_batch:
            continue
        cells = batches == b
        here, source = np.flatnonzero(cells), np.flatnonzero(reference & cells)
        outs, stats, records = [], [], []
        if calibrate:  # the batch's own reference cells, whatever the goal
            ref_rows = _subsample(np.flatnonzero(reference[cells]), random_state)
        for (goal, goal_groups), (goal_x, goal_w) in zip(goals, goal_values):
            target = np.flatnonzero(goal)
            edit = run.learn(source, target, groups=None if goal_groups is None else (
                goal_groups[source], goal_groups[target]), populations=None if labels is None
                else (labels[source], labels[target]))
            out, stat = run.apply(here, edit, None if labels is None else labels[here],
                                  statistics=True, policy=False)
            if calibrate:
                out[:, features] = quantile_map(out[:, features], out[ref_rows][:, features],
                                                goal_x, goal_w, n_quantiles)
            outs.append(out)
            stats.append(stat)
            if populations is not None:
                records.append(population_record(edit, populations, cells))
        # One goal: its correction. Every batch's reference in turn: the mean of the
        # corrections, which per feature is the monotone map onto the average of the goals'
        # quantiles (see ``pooled_goal``).
        out = outs[0] if len(outs) == 1 else np.mean(outs, axis=0, dtype=np.float64).astype(np.float32)
        run.finish(out, here)
        rows.append(here)
        values.append(out)
        per_batch[str(b)] = {
            "n_cells": int(cells.sum()), "n_reference": counts[b],
            "outside_fraction": float(np.mean([s["outside_fraction"].mean() for s in stats])),
            "mean_shift": np.mean([s["mean_shift"] for s in stats], axis=0),
        }
        if populations is not None:
            per_batch[str(b)]["populations"] = _merged_records(records)
        warn_outside(per_batch[str(b)]["outside_fraction"], f"batch {b!r}")
    rows = np.concatenate(rows)
    order = np.argsort(rows, kind="stable")
    uns = {
        **run.record(batch_key=batch_key, reference_key=reference_key,
                     reference_value=str(reference_value), reference_batch=reference_batch,
                     population_key=population_key, calibrate=calibrate, pooled_goal=pooled_goal),
        "batches": per_batch,
    }
    if checked is not None:
        uns["self_check"], uns["self_check_summary"] = checked[:2]
    return write_result(adata, key_added=key_added, X_in=X_in,
                        rows=rows[order], values=np.vstack(values)[order], uns=uns,
                        inplace=inplace, start=start)


def _goals(reference, batches, levels, reference_batch, pooled_goal) -> list[tuple]:
    """``(goal cells, groups weighing the same or None)`` of each goal a batch is corrected to."""
    if reference_batch is not None:
        return [(reference & (batches == reference_batch), None)]
    if pooled_goal == "mixture":
        return [(reference, batches)]
    return [(reference & (batches == c), None) for c in levels]


def _merged_records(records: list[dict]) -> dict:
    """One population record of several goals' edits: own edit only where every goal had one."""
    own = sorted(set.intersection(*(set(r["own"]) for r in records)))
    fallback = {}
    for r in records:
        for label, why in r["fallback"].items():
            fallback.setdefault(label, why)
    return {"own": own, "fallback": fallback, "n_edited": records[0]["n_edited"]}


def _subsample(idx: np.ndarray, random_state: int) -> np.ndarray:
    """At most :data:`~sc_neuronedit._learning.RESIDUAL_MAX_CELLS` of the sorted ``idx``,
    from a fresh stream each call."""
    return idx[subsample(len(idx), np.random.default_rng(random_state))]


def _from_keep_zeros(keep_zeros, nonnegative: str) -> str:
    """The policy named by the deprecated ``keep_zeros=`` flag, which only ``batch_correct`` had."""
    if keep_zeros is None:
        return check_policy(nonnegative)
    implied = "keep_zeros" if keep_zeros else "off"
    if nonnegative not in ("keep_zeros", implied):
        raise ValueError(f"keep_zeros={keep_zeros!r} contradicts nonnegative={nonnegative!r}; "
                         "pass nonnegative= only.")
    warn(f"keep_zeros= is deprecated; pass nonnegative={implied!r} instead.", FutureWarning)
    return implied
