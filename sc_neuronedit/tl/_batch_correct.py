from __future__ import annotations

import warnings

import numpy as np
import torch

from .. import _anndata as _ad
from .._edit import fit_quantile_edit
from .._matrix import take_rows
from .._model import RESIDUAL_BINS, RESIDUAL_MAX_CELLS
from ._checks import check_input
from ._editing import population_record, resolve_populations, trained_model
from ._nonnegative import check_policy, enforce_nonnegative, nonnegative_columns
from ._results import warn_outside, write_result
from ._self_check import batch_check, chosen_options, resolve_edit_layer


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
    edit_layer: int | str = "bottleneck",
    self_check: bool = False,
    min_reference_cells: int = 50,
    key_added: str = "batch_corrected",
    inplace: bool = True,
    decode: str = "edited_residual",
    residual_bins: int = RESIDUAL_BINS,
    calibrate: bool = False,
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
    reference cells of all batches pooled with each batch weighing the same:
    every batch is moved onto the batch-averaged reference distribution.

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
        Batch to align to; ``None`` aligns to the pooled reference.
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
        ``"bottleneck"`` (default), a hidden layer's index, or ``"input"``:
        a per-marker quantile map from the batch's reference cells to the
        goal's, with no autoencoder, as in :func:`neuron_edit`; or ``"auto"``:
        the self-check's choice.
    self_check
        Estimate how well each candidate (input layer or bottleneck, pooled or
        within populations) corrects, on the reference cells alone (implied by
        ``edit_layer="auto"``; no extra autoencoder). Leaving a batch out would
        remove the reference cells its own correction needs, so each batch's
        reference cells are split in half: the edit is learned on one half and
        the other half's alignment to the goal's other half is scored (energy
        distance; skill as in :func:`predict_perturbation`), with the mean
        relative change of each marker's spread (MAD). The choice is the lowest
        error among candidates changing the spread by at most 15 % (if none
        does, the default: the bottleneck, pooled). The proxy
        is optimistic: its held-out half comes from the very sample that
        taught the edit, where the real correction is applied to other
        samples (on the Gates data it read about 0.10 where a held-out donor
        scored 0.16).
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

    check_input(adata, layer=layer, key_added=key_added, writes="all" if inplace else None)
    nonnegative = _from_keep_zeros(keep_zeros, nonnegative)
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
    X_in = _ad.get_matrix(adata, layer)
    features = _ad.resolve_mask_var(adata, mask_var)
    features = np.ones(adata.n_vars, bool) if features is None else features
    columns = nonnegative_columns(X_in, nonnegative)

    def finish(out, rows):  # what every corrected block goes through, in the self-check too
        enforce_nonnegative(out, X_in, rows, columns, nonnegative)

    checked = None
    if self_check:
        checked = batch_check(adata, reference=reference, batches=batches, goal_batch=reference_batch,
                              populations=populations, model=model, layer=layer, mask_var=mask_var,
                              decode=decode, n_quantiles=n_quantiles, residual_bins=residual_bins,
                              random_state=random_state, device=device, finish=finish)
        if edit_layer == "auto":
            edit_layer, populations = chosen_options(checked[1], populations)
            model = checked[2] if edit_layer == "input" else model

    if reference_batch is None:
        goal, goal_groups = reference, batches
    else:
        goal, goal_groups = reference & (batches == reference_batch), None
    goal_idx = _subsample(np.flatnonzero(goal), random_state)
    goal_values = take_rows(X_in, goal_idx)[:, features]
    goal_weights = None if goal_groups is None else _ad.group_weights(batches[goal_idx])
    rows, values, per_batch = [], [], {}
    for b in levels:
        if b == reference_batch:
            continue
        cells = batches == b
        edit = model.learn_edit(reference & cells, goal, n_quantiles=n_quantiles,
                                groupby=goal_groups, populations=populations,
                                residual=decode == "edited_residual", residual_bins=residual_bins,
                                random_state=random_state)
        out = model.apply_edit(cells, edit, populations=populations, decode=decode)
        if calibrate:
            ref_rows = _subsample(np.flatnonzero(reference[cells]), random_state)
            out[:, features] = _calibrate(out[:, features], out[ref_rows][:, features],
                                          goal_values, goal_weights, n_quantiles)
        finish(out, np.flatnonzero(cells))
        rows.append(np.flatnonzero(cells))
        values.append(out)
        stats = model.edit_statistics(cells, edit, populations=populations)
        per_batch[str(b)] = {
            "n_cells": int(cells.sum()), "n_reference": counts[b],
            "outside_fraction": float(stats["outside_fraction"].mean()),
            "mean_shift": stats["mean_shift"],
        }
        if populations is not None:
            per_batch[str(b)]["populations"] = population_record(edit, populations, cells)
        warn_outside(per_batch[str(b)]["outside_fraction"], f"batch {b!r}", depth=1)
    rows = np.concatenate(rows)
    order = np.argsort(rows, kind="stable")
    uns = {
        "params": {"batch_key": batch_key, "reference_key": reference_key,
                   "reference_value": str(reference_value), "reference_batch": reference_batch,
                   "population_key": population_key,
                   "layer": layer, "decode": decode, "calibrate": calibrate,
                   "nonnegative": nonnegative, "n_quantiles": n_quantiles,
                   "residual_bins": residual_bins, "n_features": model.n_features, **model.config,
                   "edit_layer": model.edit_layer, "train": model.train_params},
        "history": model.history.to_dict(),
        "batches": per_batch,
    }
    if checked is not None:
        uns["self_check"], uns["self_check_summary"] = checked[:2]
    return write_result(adata, key_added=key_added, X_in=X_in,
                        rows=rows[order], values=np.vstack(values)[order], uns=uns,
                        inplace=inplace, start=start)


def _subsample(idx: np.ndarray, random_state: int) -> np.ndarray:
    """At most :data:`RESIDUAL_MAX_CELLS` of ``idx``: quantiles need no more."""
    if len(idx) <= RESIDUAL_MAX_CELLS:
        return idx
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(idx, RESIDUAL_MAX_CELLS, replace=False))


def _calibrate(values, source, goal, goal_weights, n_quantiles) -> np.ndarray:
    """Per-feature quantile map of ``source`` onto ``goal``, applied to ``values``."""
    edit = fit_quantile_edit(
        torch.as_tensor(source, dtype=torch.float32), torch.as_tensor(goal, dtype=torch.float32),
        n_quantiles=n_quantiles,
        target_weights=None if goal_weights is None else torch.as_tensor(goal_weights, dtype=torch.float32),
    )
    return edit.apply(torch.as_tensor(values, dtype=torch.float32)).numpy()


def _from_keep_zeros(keep_zeros, nonnegative: str) -> str:
    """The policy named by the deprecated ``keep_zeros=`` flag, which only ``batch_correct`` had."""
    if keep_zeros is None:
        return check_policy(nonnegative)
    implied = "keep_zeros" if keep_zeros else "off"
    if nonnegative not in ("keep_zeros", implied):
        raise ValueError(f"keep_zeros={keep_zeros!r} contradicts nonnegative={nonnegative!r}; "
                         "pass nonnegative= only.")
    warnings.warn(f"keep_zeros= is deprecated; pass nonnegative={implied!r} instead.",
                  FutureWarning, stacklevel=3)
    return implied
