"""Train, learn the edit, apply it: the steps every ``tl`` function shares.

AnnData is resolved into masks and labels before these are called; they
return arrays and the ``.uns`` record, and write nothing.
"""

from __future__ import annotations

import numpy as np

from .. import _anndata as _ad
from ._checks import MIN_EDIT_CELLS, check_min_cells
from ._nonnegative import check_policy
from ._pipeline import Pipeline, population_record, trained_model, usable_model
from ._results import warn_outside


def resolve_populations(adata, population_key, *, groupby=None):
    """Population labels per cell, or ``None``; a population key equal to ``groupby`` is an
    error (groups are what is held out or weighed; populations are edited apart)."""
    if population_key is not None and isinstance(groupby, str) and population_key == groupby:
        raise ValueError(f"population_key and groupby are both {groupby!r}: groups are weighed "
                         "equally or held out, populations are edited apart. Use a population "
                         "column made from lineage markers (sc_neuronedit.pp.populations).")
    return _ad.resolve_populations(adata, population_key)


def edit_cells(
    adata, X, source_mask, target_mask, apply_mask, *, train_mask, layer, mask_var, groups,
    populations, edit_layer, decode, n_quantiles, residual_bins, nonnegative, max_epochs, model,
    model_kwargs, train_kwargs, device, random_state, progress,
):
    """Train (unless ``model`` is given), learn the edit, apply it; write nothing.

    ``X`` is the input matrix, ``groups`` and ``populations`` are per-cell labels
    (or ``None``), all resolved at the ``tl`` edge. Returns the edited rows, their
    predicted values, the ``.uns`` record and the logging start time.
    """
    from scanpy import logging as logg

    check_policy(nonnegative)  # before any training
    check_min_cells({"source": source_mask.sum(), "target": target_mask.sum()}, MIN_EDIT_CELLS,
                    what="the edit's source and target", fix="Widen the selections (or groups).")
    start = logg.info(
        f"neuron editing: {int(source_mask.sum())} source -> {int(target_mask.sum())} target cells, "
        f"applied to {int(apply_mask.sum())}"
    )
    if model is None:
        model = trained_model(
            adata, cells=source_mask | target_mask | apply_mask if train_mask is None else train_mask,
            layer=layer, mask_var=mask_var, edit_layer=edit_layer, max_epochs=max_epochs,
            model_kwargs=model_kwargs, train_kwargs=train_kwargs, device=device,
            random_state=random_state, progress=progress,
        )
    else:
        usable_model(model, adata, edit_layer)
    run = Pipeline(model, X, layer=layer, decode=decode, n_quantiles=n_quantiles,
                   residual_bins=residual_bins, nonnegative=nonnegative, random_state=random_state)
    source, target, edited = (np.flatnonzero(m) for m in (source_mask, target_mask, apply_mask))

    def per_side(labels):
        return None if labels is None else tuple(labels[rows] for rows in (source, target))

    edit = run.learn(source, target, groups=per_side(groups),
                     populations=per_side(None if populations is None else populations.astype(str)))
    values, stats = run.apply(edited, edit, None if populations is None else populations[edited],
                              statistics=True)
    outside = float(stats["outside_fraction"].mean())
    warn_outside(outside, "the edited cells")
    uns = {
        **run.record(),
        "edit": stats,
        "outside_fraction": outside,
        "n_source": len(source),
        "n_target": len(target),
        "n_edited": len(edited),
    }
    if populations is not None:
        uns["populations"] = population_record(edit, populations, apply_mask)
    return edited, values, uns, start
