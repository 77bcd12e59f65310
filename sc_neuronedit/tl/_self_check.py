"""The self-check at the ``tl`` edge: AnnData in, the inner leave-one-group-out's table out.

The check itself (:mod:`sc_neuronedit._self_check`) works on masks, labels and
models; here selections are resolved, models are built the way the calling
``tl`` function builds its own, and the choice is turned back into options.
"""

from __future__ import annotations

import numpy as np

from .. import _anndata as _ad
from .. import _self_check as check
from .. import _self_check_batches as batch_rule
from .. import _self_check_choice as choice
from .._matrix import take_rows
from .._self_check_choice import default_candidate, unvouched_message, unvouched_populations
from .._warn import warn
from ._nonnegative import nonnegative_policy
from ._pipeline import trained_model

#: Training settings of a given model that the self-check's extra autoencoders copy.
_TRAIN_KEYS = ("max_epochs", "batch_size", "lr", "weight_decay", "validation_fraction", "patience",
               "mixed_precision")


def resolve_edit_layer(edit_layer, self_check: bool, *, model=None) -> tuple[object, bool]:
    """``edit_layer="auto"`` implies the self-check; with a given model, its layer wins."""
    if edit_layer == "auto":
        if model is not None:
            raise ValueError("edit_layer='auto' chooses between the input layer and a new "
                             "autoencoder; it cannot use a given model. Pass the model's "
                             "edit_layer, or leave model= out.")
        return edit_layer, True
    return edit_layer, bool(self_check)


def checked_choice(adata, *, edit_layer, self_check, model, populations, check=None, **kwargs):
    """Run the self-check when asked (or when ``edit_layer="auto"``): ``check`` (default
    :func:`perturbation_check`) with ``kwargs``.

    Returns ``(edit_layer, populations, checked)``: with ``"auto"`` the check's
    choice, and ``checked`` the table and summary (``None`` without a check).
    """
    edit_layer, self_check = resolve_edit_layer(edit_layer, self_check, model=model)
    if not self_check:
        return edit_layer, populations, None
    default = default_candidate(model.edit_layer if model is not None else edit_layer,
                                populations is not None)
    checked = (check or perturbation_check)(adata, model=model, populations=populations,
                                            default=default, switch=edit_layer == "auto", **kwargs)
    warn_unvouched(checked[1])
    if edit_layer == "auto":
        edit_layer, populations = chosen_options(checked[1], populations)
    return edit_layer, populations, checked


def warn_unvouched(summary: dict, what: str = "prediction") -> None:
    """One warning, pointed at the user's call, when the check cannot vouch for the
    prediction; populations it cannot vouch for in a prediction it vouches for go to the log."""
    from scanpy import logging as logg

    message = unvouched_message(summary, what)
    if message is not None:
        warn(message)
    elif weak := unvouched_populations(summary):
        logg.warning(f"self-check: the skill interval reaches 0 in population(s) {', '.join(weak)} "
                     "(no better than no change there, or nothing to predict)")


def perturbation_check(adata, *, source, target, groups, populations, train_mask, **settings):
    """Inner leave-one-group-out over the groups holding both ``source`` and ``target`` cells.

    Returns the long table (with a ``chosen`` column) and the summary dict.
    """
    groups = np.asarray(groups).astype(str)
    return _run(adata, "inner leave-one-group-out", check.leave_one_group_out, dict(
        source=source, target=target, groups=groups, populations=populations,
        train_mask=train_mask), **settings)


def combination_check(adata, *, control, treated, populations, train_mask, **settings):
    """Split-half proxy of each single drug's edit (``treated``: drug -> mask).

    Returns the long table (with a ``chosen`` column) and the summary dict.
    """
    return _run(adata, "each single drug's edit on held-out halves", check.split_half_effects,
                dict(control=control, treated=treated, populations=populations,
                     train_mask=train_mask), **settings)


def _run(adata, what, inner, arguments, *, default, switch, layer, mask_var, model, model_kwargs,
         train_kwargs, max_epochs, decode, n_quantiles, residual_bins, nonnegative, device,
         random_state, progress):
    """Build the check's models the way the calling ``tl`` function builds its own, run
    ``inner`` (a function of :mod:`sc_neuronedit._self_check`), choose, log."""
    from scanpy import logging as logg

    X = _ad.get_matrix(adata, layer)
    if model is not None:  # the extra autoencoders copy the given model's settings
        model_kwargs = {k: model.config[k] for k in ("hidden", "n_latent", "standardize")}
        train_kwargs = {k: v for k, v in model.train_params.items() if k in _TRAIN_KEYS}
        if train_kwargs.get("patience", 0) < 0:  # recorded as -1 for "no early stopping"
            train_kwargs["patience"] = None
        max_epochs, mask_var, layer = None, model.feature_mask, model.layer

    finish = nonnegative_policy(X, nonnegative)  # inner predictions: the output's policy

    def make_model(edit_layer, cells):
        return trained_model(adata, cells=cells, layer=layer, mask_var=mask_var, edit_layer=edit_layer,
                             max_epochs=max_epochs, model_kwargs=model_kwargs,
                             train_kwargs=train_kwargs, device=device, random_state=random_state,
                             progress=progress)

    start = logg.info(f"self-check: {what}")
    table = inner(
        rows=lambda idx: take_rows(X, idx), make_model=make_model,
        learn_options=dict(n_quantiles=n_quantiles, residual=decode == "edited_residual",
                           residual_bins=residual_bins, random_state=random_state),
        apply_options=dict(decode=decode), finish=finish, random_state=random_state,
        progress=logg.info, **arguments)
    chosen, summary = choice.choose(table, default, switch=switch)
    table["chosen"] = table["candidate"] == chosen
    logg.info(f"    self-check: {choice.summary_line(summary)}", time=start)
    return table, summary


def batch_check(adata, *, reference, batches, goal_batch, populations, model, layer, mask_var,
                decode, n_quantiles, residual_bins, random_state, device, finish=None,
                pooled_goal="average"):
    """The split-half proxy of every candidate for batch correction (no extra fits: the
    bottleneck candidates use ``model``, trained on all cells), and the choice by
    distribution error and spread gap (:func:`~sc_neuronedit._self_check_batches.choose_for_batches`);
    a warning when every candidate widens the spread gap over no correction."""
    from scanpy import logging as logg

    X = _ad.get_matrix(adata, layer)
    input_model = trained_model(adata, cells=None, layer=layer, mask_var=mask_var, edit_layer="input",
                                max_epochs=None, model_kwargs=None, train_kwargs=None, device=device,
                                random_state=random_state, progress=False)
    start = logg.info("self-check: each batch's reference cells split in half")
    table = batch_rule.split_half_batches(
        rows=lambda idx: take_rows(X, idx), reference=reference,
        batches=np.asarray(batches).astype(str), goal_batch=goal_batch, populations=populations,
        models={"input": input_model, "bottleneck": model},
        learn_options=dict(n_quantiles=n_quantiles, residual=decode == "edited_residual",
                           residual_bins=residual_bins, random_state=random_state),
        apply_options=dict(decode=decode), finish=finish, pooled_goal=pooled_goal,
        random_state=random_state)
    chosen, summary = batch_rule.choose_for_batches(table)
    warn_unvouched(summary, "correction")
    table["chosen"] = table["candidate"] == chosen
    logg.info(f"    self-check: {choice.summary_line(summary)}; spread gap "
              f"{summary['expected_spread_gap']:.3f} (uncorrected {summary['no_change_spread_gap']:.3f})",
              time=start)
    if summary["spread_guard"] == "none keeps":
        warn(
            "batch_correct self-check: every candidate widened the gap between the batches' "
            f"spreads on held-out reference cells (uncorrected {summary['no_change_spread_gap']:.3f}, "
            f"{summary['chosen']} {summary['expected_spread_gap']:.3f}); the correction may make "
            "spreads less comparable between batches.")
    return table, summary, input_model


def chosen_options(summary: dict, populations):
    """``(edit_layer, populations)`` of the self-check's choice."""
    layer, how = summary["chosen"].split(", ")
    return layer, populations if how == "within populations" else None
