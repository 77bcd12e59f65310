"""One pipeline for every ``tl`` function: train or reuse -> learn -> apply -> the
non-negative policy -> statistics -> the ``.uns`` record.

AnnData is read at the ``tl`` edge: here cells are row indices into the matrix
the model reads, labels are arrays, and the engines do the work. The cells an
edit is applied to are read once, for the prediction and its statistics alike.
"""

from __future__ import annotations

import numpy as np

from .. import _anndata as _ad
from .. import _applying, _learning
from .._matrix import Columns, Rows
from .._model import NeuronEditor
from ._checks import MIN_EDIT_CELLS, check_min_cells
from ._nonnegative import check_policy, nonnegative_policy
from ._results import warn_outside


def resolve_populations(adata, population_key, *, groupby=None):
    """Population labels per cell, or ``None``; a population key equal to ``groupby`` is an
    error (groups are what is held out or weighed; populations are edited apart)."""
    if population_key is not None and isinstance(groupby, str) and population_key == groupby:
        raise ValueError(f"population_key and groupby are both {groupby!r}: groups are weighed "
                         "equally or held out, populations are edited apart. Use a population "
                         "column made from lineage markers (sc_neuronedit.pp.populations).")
    return _ad.resolve_populations(adata, population_key)


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


class Pipeline:
    """A trained model's edits for one ``tl`` call.

    Parameters
    ----------
    model
        The trained :class:`NeuronEditor` (bound to the call's AnnData).
    X, layer
        The call's input matrix (``.X`` or ``layer``): outputs keep its values where
        the policy says so.
    decode, n_quantiles, residual_bins, nonnegative, random_state
        The ``tl`` function's options.
    """

    def __init__(self, model: NeuronEditor, X, *, layer: str | None, decode: str,
                 n_quantiles: int, residual_bins: int, nonnegative: str, random_state: int):
        self.model, self.X, self.layer = model, X, layer
        # The matrix the model reads: the call's own, unless a given model models another layer.
        read = X if model.layer == layer else _ad.get_matrix(model.adata, model.layer)
        self.view = Columns(read, model.columns)
        self.decode, self.n_quantiles, self.residual_bins = decode, n_quantiles, residual_bins
        self.nonnegative, self.random_state = nonnegative, random_state
        #: The non-negative policy on predicted ``values`` of ``rows``, in place.
        self.finish = nonnegative_policy(X, nonnegative)

    def rows(self, idx) -> Rows:
        """Rows ``idx`` (indices into the data, repeats allowed) as the engines take them."""
        return Rows(self.view, np.asarray(idx))

    def learn(self, source, target, *, groups=None, populations=None) -> _learning.Edit:
        """The edit from the rows ``source`` to the rows ``target``; ``groups`` and
        ``populations`` are each a pair of per-side label arrays, or ``None``."""
        m = self.model
        s_groups, t_groups = (None, None) if groups is None else groups
        return _learning.learn_edit(
            m.network, m.edit_layer, self.rows(source), self.rows(target), device=m.device,
            source_groups=s_groups, target_groups=t_groups, populations=populations,
            n_quantiles=self.n_quantiles, residual=self.decode == "edited_residual",
            residual_bins=self.residual_bins, random_state=self.random_state)

    def apply(self, cells, edit, labels=None, *, statistics: bool = False, policy: bool = True):
        """``edit`` applied to the rows ``cells`` (population ``labels`` per cell), under the
        non-negative policy (unless ``policy=False``: ``finish`` then applies it later);
        with ``statistics``, also the edit's statistics on those cells, from the same reads.
        Returns the values, or ``(values, statistics)``."""
        m, rows = self.model, self.rows(cells)
        out = _applying.apply_edit(m.network, m.edit_layer, rows, edit, labels, self.decode,
                                   with_statistics=statistics)
        if policy:
            self.finish(out[0] if statistics else out, rows.idx)
        return out

    def record(self, **head) -> dict:
        """``.uns``'s ``params`` (the call's own ``head`` first) and ``history``."""
        m = self.model
        return {
            "params": {**head, "layer": self.layer, "decode": self.decode,
                       "nonnegative": self.nonnegative, "n_quantiles": self.n_quantiles,
                       "residual_bins": self.residual_bins, "n_features": m.n_features,
                       **m.config, "edit_layer": m.edit_layer, "train": m.train_params},
            "history": m.history.to_dict(),
        }


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
