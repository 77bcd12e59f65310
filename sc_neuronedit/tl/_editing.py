"""Train, learn the edit, apply it: the steps every ``tl`` function shares.

AnnData is resolved into masks and labels before these are called; they
return arrays and the ``.uns`` record, and write nothing.
"""

from __future__ import annotations

import numpy as np

from .. import _anndata as _ad
from .._model import NeuronEditor
from ._checks import MIN_EDIT_CELLS, check_min_cells
from ._nonnegative import enforce_nonnegative, nonnegative_columns
from ._results import warn_outside


def resolve_populations(adata, population_key, *, groupby=None):
    """Population labels per cell, or ``None``; a population key equal to ``groupby`` is an
    error (groups are what is held out or weighed; populations are edited apart)."""
    if population_key is not None and isinstance(groupby, str) and population_key == groupby:
        raise ValueError(f"population_key and groupby are both {groupby!r}: groups are weighed "
                         "equally or held out, populations are edited apart. Use a population "
                         "column made from lineage markers (sc_neuronedit.pp.populations).")
    return _ad.resolve_populations(adata, population_key)


def usable_model(model, adata, edit_layer):
    """Check a ``model=`` passed to a ``tl`` function against its data and ``edit_layer``."""
    if model.adata is not adata:
        raise ValueError("model was built on another AnnData; load it onto this one with "
                         "NeuronEditor.load(path, adata).")
    bottleneck = len(model.config["hidden"])
    wanted = edit_layer if edit_layer == "input" else (
        bottleneck if edit_layer in ("bottleneck", None) else edit_layer)
    if wanted != model.edit_layer:
        raise ValueError(f"edit_layer={edit_layer!r} but the model edits layer "
                         f"{model.edit_layer!r}; pass edit_layer={model.edit_layer!r} with this "
                         "model, or leave model= out to build one.")
    return model


def trained_model(adata, *, cells, layer, mask_var, edit_layer, max_epochs, model_kwargs,
                  train_kwargs, device, random_state, progress) -> NeuronEditor:
    """A :class:`NeuronEditor` on ``adata`` trained on ``cells`` (``None``: all)."""
    if "edit_layer" in (model_kwargs or {}):
        raise ValueError("Pass edit_layer= to the tl function itself, not in model_kwargs.")
    model = NeuronEditor(adata, layer=layer, mask_var=mask_var, edit_layer=edit_layer,
                         **(model_kwargs or {}))
    kwargs = dict(train_kwargs or {})
    if max_epochs is not None:
        kwargs["max_epochs"] = max_epochs
    return model.train(cells=cells, device=device, random_state=random_state, progress=progress,
                       **kwargs)


def edit_cells(
    adata, source_mask, target_mask, apply_mask, *, train_mask, layer, mask_var, groups,
    populations, edit_layer, decode, n_quantiles, residual_bins, nonnegative, max_epochs, model,
    model_kwargs, train_kwargs, device, random_state, progress,
):
    """Train (unless ``model`` is given), learn the edit, apply it; write nothing.

    ``groups`` and ``populations`` are per-cell labels (or ``None``), resolved
    at the ``tl`` edge. Returns the edited rows, their predicted values, the
    ``.uns`` record and the logging start time.
    """
    from scanpy import logging as logg

    columns = nonnegative_columns(_ad.get_matrix(adata, layer), nonnegative)
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
    edit = model.learn_edit(source_mask, target_mask, n_quantiles=n_quantiles, groupby=groups,
                            populations=populations, residual=decode == "edited_residual",
                            residual_bins=residual_bins, random_state=random_state)
    values = enforce_nonnegative(
        model.apply_edit(apply_mask, edit, populations=populations, decode=decode),
        _ad.get_matrix(adata, layer), np.flatnonzero(apply_mask), columns, nonnegative)
    stats = model.edit_statistics(apply_mask, edit, populations=populations)
    outside = float(stats["outside_fraction"].mean())
    warn_outside(outside, "the edited cells", depth=2)
    uns = {
        "params": {
            "layer": layer, "decode": decode, "nonnegative": nonnegative, "n_quantiles": n_quantiles,
            "residual_bins": residual_bins,
            "n_features": model.n_features, **model.config, "edit_layer": model.edit_layer,
            "train": model.train_params,
        },
        "history": model.history.to_dict(),
        "edit": stats,
        "outside_fraction": outside,
        "n_source": int(source_mask.sum()),
        "n_target": int(target_mask.sum()),
        "n_edited": int(apply_mask.sum()),
    }
    if populations is not None:
        uns["populations"] = population_record(edit, populations, apply_mask)
    return np.flatnonzero(apply_mask), values, uns, start


def population_record(edit, populations, edited) -> dict:
    """What ``.uns`` keeps of a within-population edit: who had an edit of their own,
    who fell back to the pooled edit and why, and how many cells were edited in each."""
    labels, counts = np.unique(populations[edited], return_counts=True)
    fallback = dict(edit.fallback or {})
    for label in labels:
        if label not in edit.populations and label not in fallback:
            fallback[label] = "no source or target cells"
    return {"own": sorted(edit.populations), "fallback": fallback,
            "n_edited": dict(zip(labels.tolist(), counts.tolist()))}
