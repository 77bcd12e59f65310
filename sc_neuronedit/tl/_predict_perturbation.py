from __future__ import annotations

import numpy as np

from .. import _anndata as _ad
from .._learning import RESIDUAL_BINS
from .._model import NeuronEditor
from .._warn import warn
from ._checks import check_input
from ._pipeline import edit_cells, resolve_populations
from ._results import write_result
from ._self_check import checked_choice


def predict_perturbation(
    adata,
    condition_key: str,
    *,
    control: str,
    perturbed: str,
    groupby: str,
    predict_for,
    layer: str | None = None,
    mask_var=None,
    population_key: str | None = None,
    edit_layer: int | str = "bottleneck",
    self_check: bool = False,
    balance: bool = True,
    key_added: str = "predicted_perturbation",
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
    """Predict how a group that was never perturbed responds to a perturbation.

    The autoencoder is trained on every cell except the perturbed cells of
    ``predict_for`` (which then need not exist). The edit is learned from the
    control to the perturbed cells of the other groups that have both, and
    applied to the control cells of ``predict_for``.

    Parameters
    ----------
    adata
        Annotated data matrix, e.g. log-normalised expression.
    condition_key
        ``.obs`` column holding the condition.
    control, perturbed
        The condition values of unperturbed and perturbed cells.
    groupby
        ``.obs`` column of groups, e.g. ``"cell_type"``.
    predict_for
        Group(s) to predict. Their perturbed cells, if any, are never used.
    layer, mask_var
        Input layer and features the autoencoder sees, as in :func:`neuron_edit`.
    population_key, edit_layer
        Edits within cell populations, and the edited layer, as in
        :func:`neuron_edit`. Predicted cells keep the population of the control
        cell they came from. ``population_key`` must differ from ``groupby``.
        ``edit_layer="auto"`` runs the self-check and predicts with its choice.
    self_check
        Estimate how good the prediction is likely to be (implied by
        ``edit_layer="auto"``; off by default, as it costs 2 extra autoencoder
        fits). Each training group in turn is left out and its perturbed cells
        are predicted from its control cells, by every candidate: the input
        layer and the bottleneck, pooled and (with ``population_key``) within
        populations. No group is scored with an autoencoder that saw its
        perturbed cells: two extra autoencoders are trained, each without the
        perturbed cells of one half of the groups. Error: energy distance to
        the group's real perturbed cells (in the features for panels of up
        to 60, else in a PCA-50 of the group's real cells); skill =
        1 - error / the error of predicting no change; with ``population_key``,
        the mean of the populations' skills, each population weighing the
        same (over all cells, a response confined to a small population is
        diluted by the large ones). The choice keeps the default (the
        bottleneck, within populations when they are given) unless another
        candidate's mean skill gain over it, paired by group, exceeds the
        one-sided t quantile (10 %, for each alternative) times its
        standard error. The summary gives a 90 % prediction interval of the
        skill; when it reaches 0 a ``UserWarning`` says the prediction may be
        worse than no change. Needs at least 3 training groups.
    balance
        Weigh every training group equally in the control and in the perturbed
        quantiles (default). Otherwise groups whose share changes with the
        condition (e.g. monocytes in the Kang data, 238 control vs 83
        stimulated) make the change of composition look like the effect.
    key_added
        Where results go: ``layers[key_added]``, ``obs[f"{key_added}_edited"]``,
        ``uns[key_added]``.
    inplace
        Write into ``adata`` (default) or return a new AnnData of the
        predicted cells (``obs[condition_key]`` set to ``f"{perturbed} (predicted)"``),
        ready to concatenate with observed cells.
    model
        A trained :class:`NeuronEditor` on ``adata`` to reuse instead of
        training (train once, predict many groups or forms). For an out-of-sample
        prediction it must not have seen the perturbed cells of ``predict_for``:
        train it with ``cells=`` excluding them. When it has (known from
        ``model.trained_rows``; not after :meth:`NeuronEditor.load`), a
        ``UserWarning`` says how many.
    decode, residual_bins, nonnegative, n_quantiles, max_epochs
        As in :func:`neuron_edit`.
    model_kwargs, train_kwargs, device, random_state, progress
        As in :func:`neuron_edit`.

    Returns
    -------
    With ``inplace=True``, ``None``, and sets ``adata.layers[key_added]`` (rows
    of other cells keep their input values), ``adata.obs[f"{key_added}_edited"]``
    and ``adata.uns[key_added]`` (``params``, ``history``, per-neuron ``edit``
    statistics, ``outside_fraction``, ``training_groups``; with the
    self-check, ``self_check``: a long DataFrame of group x candidate (x
    population) with ``error``, ``no_change``, ``skill`` and ``chosen``, and
    ``self_check_summary``: the choice and the ``default``, its expected
    skill, ``skill_interval`` (a t prediction interval for one more group at
    ``interval_level``, 90 %), ``vouched`` (the interval above 0), the paired
    ``comparison`` of every candidate with the default, per-population
    intervals (``populations``), and the next best). With
    ``inplace=False``, an AnnData of the predicted cells.

    Examples
    --------
    >>> import sc_neuronedit as sne
    >>> adata = sne.datasets.kang()
    >>> sne.tl.predict_perturbation(
    ...     adata, "condition", control="control", perturbed="stimulated",
    ...     groupby="cell_type", predict_for="CD14+Mono", random_state=0)
    >>> int(adata.obs["predicted_perturbation_edited"].sum())  # the control CD14+Mono cells
    238
    >>> predicted = adata[adata.obs["predicted_perturbation_edited"]].layers["predicted_perturbation"]
    """
    X = check_input(adata, layer=layer, key_added=key_added, writes="all" if inplace else None)
    # Columns first, so that a wrong column is named by its own argument, not by a value's.
    _ad.resolve_groups(adata, condition_key, name="condition_key")
    groups = _ad.resolve_groups(adata, groupby)
    control_mask = _ad.resolve_selection(adata, {condition_key: control}, name="control")
    perturbed_mask = _ad.resolve_selection(adata, {condition_key: perturbed}, name="perturbed")
    if control == perturbed:
        raise ValueError("control and perturbed must be different conditions.")
    held_out = _ad.resolve_selection(adata, {groupby: predict_for}, name="predict_for")
    populations = resolve_populations(adata, population_key, groupby=groupby)

    apply_mask = held_out & control_mask
    if not apply_mask.any():
        raise ValueError(f"predict_for={predict_for!r} has no {control!r} cells to predict from.")
    # Only groups seen in both conditions can teach the edit.
    other = ~held_out
    both = np.intersect1d(groups[other & control_mask], groups[other & perturbed_mask])
    if len(both) == 0:
        raise ValueError(
            f"No group outside predict_for has both {control!r} and {perturbed!r} cells, "
            "so there is nothing to learn the perturbation from."
        )
    learn = other & np.isin(groups, both)
    train_mask = ~(held_out & perturbed_mask)
    if model is not None:
        _warn_if_seen(model, adata, held_out & perturbed_mask, predict_for, perturbed)
    settings = dict(layer=layer, mask_var=mask_var, max_epochs=max_epochs, model_kwargs=model_kwargs,
                    train_kwargs=train_kwargs, decode=decode, n_quantiles=n_quantiles,
                    residual_bins=residual_bins, nonnegative=nonnegative, device=device,
                    random_state=random_state, progress=progress)
    edit_layer, populations, checked = checked_choice(
        adata, edit_layer=edit_layer, self_check=self_check, model=model, populations=populations,
        source=learn & control_mask, target=learn & perturbed_mask, groups=groups,
        train_mask=train_mask, **settings)
    rows, values, uns, start = edit_cells(
        adata, X, learn & control_mask, learn & perturbed_mask, apply_mask, train_mask=train_mask,
        groups=groups if balance else None, populations=populations, edit_layer=edit_layer,
        model=model, **settings,
    )
    if checked is not None:
        uns["self_check"], uns["self_check_summary"] = checked
    uns["params"].update(
        condition_key=condition_key, control=control, perturbed=perturbed, groupby=groupby,
        predict_for=list(np.atleast_1d(predict_for)), balance=balance, population_key=population_key,
    )
    uns["training_groups"] = list(both.astype(str))
    return write_result(
        adata, key_added=key_added, X_in=X, rows=rows, values=values,
        uns=uns, inplace=inplace, obs_update={condition_key: f"{perturbed} (predicted)"}, start=start,
    )


def _warn_if_seen(model, adata, target, predict_for, perturbed) -> None:
    """Warn when ``model`` was trained on cells of the held-out group's target condition."""
    if model.trained_rows is None or model.adata is not adata:
        return
    seen = int(target[model.trained_rows].sum())
    if seen:
        warn(
            f"model was trained on {seen} {perturbed!r} cells of predict_for={predict_for!r}, the "
            "cells being predicted: the prediction is not out of sample. Train the model without "
            "them, e.g. model.train(cells=~held_out) with held_out marking those cells.")
