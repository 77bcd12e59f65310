from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import _anndata as _ad
from .._model import NeuronEditor
from ._checks import MIN_EDIT_CELLS, check_input, check_min_cells
from ._nonnegative import enforce_nonnegative, nonnegative_columns
from ._results import warn_outside, write_result


def _describe(selection) -> str:
    if isinstance(selection, Mapping):
        return ", ".join(f"{k}={v!r}" for k, v in selection.items())
    mask = np.asarray(selection)
    return f"mask of {int(mask.sum()) if mask.dtype == bool else len(mask)} cells"


def neuron_edit(
    adata,
    source,
    target,
    *,
    apply_to,
    layer: str | None = None,
    mask_var=None,
    groupby: str | None = None,
    train_on=None,
    key_added: str = "neuron_edit",
    inplace: bool = True,
    decode: str = "edited_residual",
    nonnegative: str = "clip",
    n_quantiles: int = 100,
    max_epochs: int | None = None,
    model: NeuronEditor | None = None,
    model_kwargs: dict | None = None,
    train_kwargs: dict | None = None,
    device: str = "auto",
    random_state: int = 0,
    progress: bool = True,
):
    """Learn the edit from ``source`` to ``target`` cells and apply it to ``apply_to``.

    An autoencoder is trained on the source, target and ``apply_to`` cells;
    per neuron of its bottleneck (or ``model_kwargs['edit_layer']``), the
    quantiles of the source activations are mapped onto those of the target
    activations, and that piecewise-linear shift is applied to the
    ``apply_to`` cells' activations, which are then decoded.

    Parameters
    ----------
    adata
        Annotated data matrix (dense, CSR or backed).
    source, target, apply_to
        Cells as ``{obs_key: value or list}`` (several keys: all must hold) or
        boolean masks over ``adata.obs``.
    layer
        Use ``adata.layers[layer]`` instead of ``adata.X``.
    mask_var
        Features the autoencoder sees (boolean ``.var`` column, mask or var
        names), e.g. highly variable genes or marker channels; the others are
        passed through unchanged.
    groupby
        ``.obs`` column of groups (e.g. cell types) that should weigh equally in
        the source and in the target, so a change of composition between them
        is not learned as the effect.
    train_on
        Cells to train the autoencoder on; default source, target and
        ``apply_to`` together. Ignored when ``model`` is given.
    key_added
        Where results go: ``layers[key_added]``, ``obs[f"{key_added}_edited"]``,
        ``uns[key_added]``.
    inplace
        Write into ``adata`` (default) or return a new AnnData of the edited
        cells with the predictions in ``.X``.
    decode
        ``"edited_residual"`` (default), ``"residual"`` or ``"plain"``; see
        :meth:`NeuronEditor.apply_edit`.
    nonnegative
        What predictions of features without negative input values (e.g.
        log-normalised expression) may do below zero. ``"clip"`` (default):
        set to zero, so that scanpy's fold changes (``log2`` of the mean) stay
        defined. ``"keep_zeros"``: also keep an input zero at zero (suits
        batch effects; for a perturbation it would erase genes that switch
        on). ``"off"``: as decoded. Features with negative input values (e.g.
        arcsinh cytometry) are never touched.
    n_quantiles
        Knots of the per-neuron edit.
    max_epochs
        Training length; default that of :meth:`NeuronEditor.train`.
    model
        A trained :class:`NeuronEditor` on ``adata`` to reuse instead of training.
    model_kwargs, train_kwargs
        Passed to :class:`NeuronEditor` (``hidden``, ``n_latent``, ``edit_layer``)
        and to :meth:`NeuronEditor.train` (``batch_size``, ``lr``, ``patience``, ...).
    device
        ``"auto"`` uses a GPU when present.
    random_state
        Seed of the autoencoder's training.
    progress
        Show a progress bar while training.

    Returns
    -------
    With ``inplace=True``, ``None``, and sets

    ``adata.layers[key_added]``
        Predicted values for the edited cells; every other row keeps its input.
    ``adata.obs[f"{key_added}_edited"]``
        Boolean, ``True`` for the edited cells.
    ``adata.uns[key_added]``
        ``params``, training ``history``, per-neuron ``edit`` statistics (shift
        summary and the share of activations outside the source range) and the
        overall ``outside_fraction``.

    With ``inplace=False``, an AnnData of the edited cells, predictions in ``.X``.

    Examples
    --------
    Learn the interferon response of B and NK cells and apply it to control
    CD8 T cells:

    >>> import sc_neuronedit as sne
    >>> adata = sne.datasets.kang_pbmc()
    >>> sne.tl.neuron_edit(
    ...     adata, {"condition": "control", "cell_type": ["B", "NK"]},
    ...     {"condition": "stimulated", "cell_type": ["B", "NK"]},
    ...     apply_to={"condition": "control", "cell_type": "CD8T"},
    ...     groupby="cell_type", key_added="ifn_cd8", random_state=0, progress=False)
    >>> int(adata.obs["ifn_cd8_edited"].sum())
    69
    >>> predicted = adata[adata.obs["ifn_cd8_edited"]].layers["ifn_cd8"]
    """
    check_input(adata, layer=layer, key_added=key_added, writes="all" if inplace else None)
    masks = {
        name: _ad.resolve_selection(adata, sel, name=name)
        for name, sel in (("source", source), ("target", target), ("apply_to", apply_to))
    }
    train_mask = None if train_on is None else _ad.resolve_selection(adata, train_on, name="train_on")
    if groupby is not None:
        _ad.resolve_groups(adata, groupby)
    rows, values, uns, start = edit_cells(
        adata, masks["source"], masks["target"], masks["apply_to"],
        train_mask=train_mask, layer=layer, mask_var=mask_var, groupby=groupby, decode=decode,
        nonnegative=nonnegative, n_quantiles=n_quantiles, max_epochs=max_epochs, model=model,
        model_kwargs=model_kwargs, train_kwargs=train_kwargs, device=device,
        random_state=random_state, progress=progress,
    )
    uns["params"].update(
        source=_describe(source), target=_describe(target), apply_to=_describe(apply_to)
    )
    return write_result(
        adata, key_added=key_added, X_in=_ad.get_matrix(adata, layer), rows=rows, values=values,
        uns=uns, inplace=inplace, start=start,
    )


def trained_model(adata, *, cells, layer, mask_var, max_epochs, model_kwargs, train_kwargs,
                  device, random_state, progress) -> NeuronEditor:
    """A :class:`NeuronEditor` on ``adata`` trained on ``cells`` (``None``: all)."""
    model = NeuronEditor(adata, layer=layer, mask_var=mask_var, **(model_kwargs or {}))
    kwargs = dict(train_kwargs or {})
    if max_epochs is not None:
        kwargs["max_epochs"] = max_epochs
    return model.train(cells=cells, device=device, random_state=random_state, progress=progress,
                       **kwargs)


def edit_cells(
    adata, source_mask, target_mask, apply_mask, *, train_mask, layer, mask_var, groupby,
    decode, nonnegative, n_quantiles, max_epochs, model, model_kwargs, train_kwargs, device, random_state,
    progress,
):
    """Train (unless ``model`` is given), learn the edit, apply it; write nothing.

    Returns the edited rows, their predicted values, the ``.uns`` record and
    the logging start time.
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
            layer=layer, mask_var=mask_var, max_epochs=max_epochs, model_kwargs=model_kwargs,
            train_kwargs=train_kwargs, device=device, random_state=random_state, progress=progress,
        )
    elif model.adata is not adata:
        raise ValueError("model was built on another AnnData; load it onto this one with "
                         "NeuronEditor.load(path, adata).")
    edit = model.learn_edit(source_mask, target_mask, n_quantiles=n_quantiles, groupby=groupby,
                            residual=decode == "edited_residual", random_state=random_state)
    values = enforce_nonnegative(model.apply_edit(apply_mask, edit, decode=decode),
                                 _ad.get_matrix(adata, layer), np.flatnonzero(apply_mask),
                                 columns, nonnegative)
    stats = model.edit_statistics(apply_mask, edit)
    outside = float(stats["outside_fraction"].mean())
    warn_outside(outside, "the edited cells", depth=2)
    uns = {
        "params": {
            "layer": layer, "groupby": groupby, "decode": decode, "nonnegative": nonnegative,
            "n_quantiles": n_quantiles,
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
    return np.flatnonzero(apply_mask), values, uns, start
