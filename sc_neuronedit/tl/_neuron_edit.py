from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .. import _anndata as _ad
from .._learning import RESIDUAL_BINS
from .._model import NeuronEditor
from ._checks import check_input
from ._pipeline import edit_cells, resolve_populations
from ._results import write_result
from ._self_check import checked_choice


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
    population_key: str | None = None,
    edit_layer: int | str = "bottleneck",
    self_check: bool = False,
    train_on=None,
    key_added: str = "neuron_edit",
    inplace: bool = True,
    decode: str = "edited_residual",
    residual_bins: int = RESIDUAL_BINS,
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
    population_key
        ``.obs`` column of cell populations (from
        :func:`sc_neuronedit.pp.populations`, a manual gating or Leiden
        labels). One edit is then learned within each population, from its
        own source and target cells, and each cell takes its own population's
        edit: a response confined to one population (BCR cross-linking acts
        on B cells) is not diluted by the others. A population with fewer than
        20 source or target cells (or, with ``groupby``, fewer than 2 groups
        of at least 5 cells) takes the pooled edit, with a warning; so do
        populations absent from the source or target. Populations must come
        from lineage markers that the transformation does not move, never
        from the features that are later scored or tested.
    edit_layer
        ``"bottleneck"`` (default), a hidden layer's index, or ``"input"``:
        the same quantile edit on each input feature, with no autoencoder
        (nothing is trained: seconds, not minutes). On small cytometry panels
        the input often wins; on sparse scRNA the bottleneck does. ``"auto"``:
        the self-check's choice.
    self_check
        With ``groupby``: leave each group holding source and target cells out
        in turn, predict its target cells from its source cells with every
        candidate, and report the expected error and skill (see
        :func:`predict_perturbation`). Implied by ``edit_layer="auto"``.
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
    residual_bins
        Level bins of the residual edit (``decode="edited_residual"``); see
        :meth:`NeuronEditor.learn_edit`.
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
        Passed to :class:`NeuronEditor` (``hidden``, ``n_latent``, ``standardize``)
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
        overall ``outside_fraction``; with ``population_key``, ``populations``:
        ``own`` (the populations with an edit of their own) and ``fallback``
        (those that took the pooled edit, and why).

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
    X = check_input(adata, layer=layer, key_added=key_added, writes="all" if inplace else None)
    masks = {
        name: _ad.resolve_selection(adata, sel, name=name)
        for name, sel in (("source", source), ("target", target), ("apply_to", apply_to))
    }
    train_mask = None if train_on is None else _ad.resolve_selection(adata, train_on, name="train_on")
    groups = None if groupby is None else _ad.resolve_groups(adata, groupby)
    populations = resolve_populations(adata, population_key, groupby=groupby)
    if (self_check or edit_layer == "auto") and groups is None:
        raise ValueError("The self-check (self_check=True or edit_layer='auto') leaves out one group "
                         "at a time: pass groupby=.")
    settings = dict(layer=layer, mask_var=mask_var, max_epochs=max_epochs, model_kwargs=model_kwargs,
                    train_kwargs=train_kwargs, decode=decode, n_quantiles=n_quantiles,
                    residual_bins=residual_bins, nonnegative=nonnegative, device=device,
                    random_state=random_state, progress=progress)
    default_train = masks["source"] | masks["target"] | masks["apply_to"]
    edit_layer, populations, checked = checked_choice(
        adata, edit_layer=edit_layer, self_check=self_check, model=model, populations=populations,
        source=masks["source"], target=masks["target"], groups=groups,
        train_mask=default_train if train_mask is None else train_mask, **settings)
    rows, values, uns, start = edit_cells(
        adata, X, masks["source"], masks["target"], masks["apply_to"], train_mask=train_mask,
        groups=groups, populations=populations, edit_layer=edit_layer, model=model, **settings,
    )
    if checked is not None:
        uns["self_check"], uns["self_check_summary"] = checked
    uns["params"].update(
        source=_describe(source), target=_describe(target), apply_to=_describe(apply_to),
        groupby=groupby, population_key=population_key,
    )
    return write_result(
        adata, key_added=key_added, X_in=X, rows=rows, values=values,
        uns=uns, inplace=inplace, start=start,
    )
