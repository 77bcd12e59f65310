"""Drug combinations: predict A+B from A and B alone, and score synergy."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .._learning import RESIDUAL_BINS
from .._model import NeuronEditor
from ._combination_run import CombinationRun
from ._results import to_uns, write_result


def predict_combination(
    adata,
    condition_key: str,
    *,
    control: str,
    drug_a: str,
    drug_b: str,
    combination: str | None = None,
    layer: str | None = None,
    mask_var=None,
    population_key: str | None = None,
    edit_layer: int | str = "bottleneck",
    self_check: bool = False,
    key_added: str = "combination",
    n_resamples: int = 100,
    bliss_quantile: float = 0.95,
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
    """Predict the combination of two drugs as if their effects did not interact.

    The autoencoder is trained on the control, ``drug_a`` and ``drug_b``
    cells (never on the combination). The edit control → A is applied to the
    B-treated cells, and the edit control → B to the A-treated cells: two
    routes to the same expectation. How well they agree is reported; when
    the combination was measured, :func:`synergy` scores it against the
    pooled prediction.

    Parameters
    ----------
    adata
        Annotated data matrix (e.g. ``arcsinh`` cytometry or log-normalised
        expression).
    condition_key
        ``.obs`` column of conditions.
    control, drug_a, drug_b
        Condition values of the untreated and the two single-drug samples.
    combination
        Condition value of the measured combination, if any: then synergy
        is scored as well (see :func:`synergy`).
    layer, mask_var
        Input layer and the features the autoencoder sees; others pass
        through unchanged and are not scored.
    population_key, edit_layer
        Edits within cell populations, and the edited layer, as in
        :func:`neuron_edit`: each single-drug edit is learned within each
        population and applied to the other drug's cells of that population.
        With ``combination``, each population is also tested on its own
        (see :func:`synergy`). ``edit_layer="auto"`` runs the self-check and
        predicts with its choice.
    self_check
        Estimate how well each candidate (``"input"`` or ``"bottleneck"``,
        pooled or within populations) predicts a single drug's effect: the
        control and each drug's cells are split in half, the edit control ->
        drug is learned on one half and scored (energy distance, skill against
        no change) on the other, with one extra autoencoder that never saw the
        held-out drug cells. The choice keeps the default unless another
        candidate is clearly better, paired by drug (as in
        :func:`predict_perturbation`); with two drugs the skill's interval is
        wide, as it should be. The proxy is optimistic:
        it cannot see how an edit carries onto cells another drug has changed.
        Implied by ``edit_layer="auto"``; costs one extra autoencoder fit.
    key_added
        ``layers[key_added]``, ``obs[f"{key_added}_edited"]``,
        ``obs[f"{key_added}_route"]`` and ``uns[key_added]``.
    n_resamples, bliss_quantile
        As in :func:`synergy` (used only with ``combination``).
    decode, residual_bins, nonnegative, n_quantiles, max_epochs, model
        As in :func:`neuron_edit`.
    model_kwargs, train_kwargs, device, random_state, progress
        As in :func:`neuron_edit`.

    Returns
    -------
    ``None``. Sets ``adata.layers[key_added]`` (the B cells' rows hold A's
    edit applied to them, the A cells' rows B's edit; other rows keep their
    input), ``adata.obs[f"{key_added}_edited"]`` and
    ``adata.obs[f"{key_added}_route"]`` (which edit each row holds), and
    ``adata.uns[key_added]`` with ``params``, ``history``, ``agreement``
    (energy distance between the routes relative to the single-drug effects,
    and per-feature mean differences) and, with ``combination``, the tables
    of :func:`synergy`.

    Examples
    --------
    Semi-synthetic drugs on real CyTOF cells (``X`` is already ``arcsinh``):

    >>> import sc_neuronedit as sne
    >>> adata = sne.datasets.bcrxl_combination(gamma=1.0)
    >>> sne.tl.predict_combination(adata, "condition", control="control", drug_a="A",
    ...                            drug_b="B", random_state=0, progress=False)
    >>> adata.obs["combination_route"].cat.categories.tolist()
    ['B edit on A cells', 'A edit on B cells']
    >>> predicted = adata[adata.obs["combination_edited"]].layers["combination"]
    >>> ratio = adata.uns["combination"]["agreement"]["route_energy_ratio"]  # small: routes agree
    """
    pairs = {combination or f"{drug_a}+{drug_b}": (drug_a, drug_b)}
    run = CombinationRun(adata, condition_key, control=control, pairs=pairs, measured=combination is not None,
               layer=layer, mask_var=mask_var, population_key=population_key,
               edit_layer=edit_layer, self_check=self_check, key_added=key_added, decode=decode,
               nonnegative=nonnegative, residual_bins=residual_bins, n_quantiles=n_quantiles,
               model=model, max_epochs=max_epochs, model_kwargs=model_kwargs,
               train_kwargs=train_kwargs, device=device, random_state=random_state,
               progress=progress)
    (name,) = pairs
    routes = run.routes(drug_a, drug_b)
    uns = run.uns()
    uns["agreement"] = run.agreement(routes)
    if combination is not None:
        uns.update(run.synergy_tables(n_resamples=n_resamples, bliss_quantile=bliss_quantile))
    rows = np.concatenate([routes[0][0], routes[1][0]])
    values = np.vstack([routes[0][1], routes[1][1]])
    order = np.argsort(rows)
    labels = np.full(adata.n_obs, "", dtype=object)
    labels[routes[0][0]] = f"{drug_a} edit on {drug_b} cells"
    labels[routes[1][0]] = f"{drug_b} edit on {drug_a} cells"
    write_result(adata, key_added=key_added, X_in=run.X, rows=rows[order], values=values[order],
                 uns=uns, inplace=True, start=run.start)
    adata.obs[f"{key_added}_route"] = pd.Categorical(
        labels, categories=[c for c in dict.fromkeys(labels[rows[order]])])


def synergy(
    adata,
    condition_key: str,
    *,
    control: str,
    combinations: Mapping[str, tuple[str, str]],
    layer: str | None = None,
    mask_var=None,
    population_key: str | None = None,
    edit_layer: int | str = "bottleneck",
    self_check: bool = False,
    key_added: str = "synergy",
    n_resamples: int = 100,
    bliss_quantile: float = 0.95,
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
    """Score measured drug combinations against their no-interaction prediction.

    For each combination ``{"A+B": ("A", "B")}``, the prediction of
    :func:`predict_combination` (both routes pooled) is compared with the
    measured combination cells. One autoencoder, trained on the control and
    single-drug cells of all pairs, serves every pair.

    Scores, per combination and feature:

    ``mean_shift``, ``median_shift``
        Observed minus predicted; positive = more than independent effects
        would give.
    ``pvalue``, ``qvalue``
        Two-sided test of ``mean_shift = 0`` whose null includes the
        prediction's own error: the whole pipeline (cells → edits →
        prediction) is rerun on ``n_resamples`` bootstrap resamples of the
        control and single-drug cells, and half the gap between the two
        routes' predictions (an estimate of the edit's error beyond
        sampling) adds to the variance. The reference is a t distribution
        whose degrees of freedom (Welch-Satterthwaite) count that the
        variance is estimated from ``n_resamples`` reruns and the observed
        cells. Permuting observed against predicted cells instead would
        reject everything once cells are many. q-values:
        Benjamini-Hochberg over all combinations and features.
    ``bliss_excess``
        Share of responding cells (beyond the control's ``bliss_quantile``)
        observed minus Bliss-expected from the single drugs, for comparison
        with the usual drug-synergy language.

    Within populations (``population_key``; every row of the long ``tests``
    table, also without populations, where the only population is ``"all"``):
    the prediction is made with within-population edits, and per population
    and feature four statistics are tested, observed minus predicted: the
    ``mean`` and the ``q10``, ``q50`` and ``q90`` quantiles (Harrell-Davis),
    so that an interaction that moves only part of a population's cells is
    seen in a tail. Each has the standard error of the same bootstrap of the
    whole pipeline (the observed quantiles' from resampling the observed
    cells), widened, as the pooled mean's, by half the gap between the two
    routes' values of the same statistic (the edit's bias, which a bootstrap
    does not see), and by the pipeline's own distortion of that statistic:
    4 edits control -> control, each learned from one random half of the
    control cells to the other, are applied to the cells the routes edit, and
    the squared mean change of the statistic (less its noise) adds to the
    variance (an edit adds spread to a small population's tails in both routes
    alike). The reference is a t distribution. A quantile is tested only where at
    least 25 cells lie beyond it in every condition of the population (``q10`` and
    ``q90`` from 250 cells, ``q50`` from 50; the mean always): with fewer, the
    reference's tail at the thresholds of a large family is too thin (the count of
    cells below a sample quantile is binomial, and its skewness and kurtosis
    double a two-sided tail probability near z = ±4 below ~25 cells); those rows
    keep their estimate and standard error, with ``pvalue`` and ``qvalue`` NaN. The
    family of a combination is the tested rows of populations (``"all"`` = pooled)
    x features x statistics: ``qvalue`` is Benjamini-Hochberg over it. Populations
    with fewer than 20 cells in any condition are left out, with a warning, and
    listed in ``excluded_populations``.

    And per combination (``summary``): ``energy_score``, the energy distance
    between observed and predicted cells divided by the mean energy distance
    of the single-drug effects (control vs A, control vs B): 0 is no
    synergy, 1 a deviation as large as a single drug's effect;
    ``route_agreement``, the same ratio between the two routes; ``pvalue``,
    Bonferroni over features of the smallest pooled mean p-value (the wide
    tables' test); ``family_pvalue``, Holm over the combination's family, the
    tested rows of ``tests`` (``n_tests`` of them: the smallest p-value times
    ``n_tests``).

    Parameters
    ----------
    adata
        Annotated data matrix.
    condition_key
        ``.obs`` column of conditions.
    control
        Condition value of untreated cells.
    combinations
        Measured combination label → (drug A, drug B), all condition values;
        several pairs give one table.
    n_resamples
        Bootstrap reruns of the pipeline for the p-values (the autoencoder is
        reused; each rerun relearns the edits).
    bliss_quantile
        Control quantile that defines a responding cell.
    self_check
        As in :func:`predict_combination`, over every single drug of
        ``combinations``; per-population tests stay on when it chooses pooled
        edits.
    layer, mask_var, population_key, edit_layer, key_added, decode, residual_bins, nonnegative, n_quantiles
        As in :func:`predict_combination`; ``nonnegative`` applies to the
        prediction the measured cells are compared with, and to each rerun.
    max_epochs, model, model_kwargs, train_kwargs, device, random_state, progress
        As in :func:`predict_combination`.

    Returns
    -------
    ``None``. Sets ``adata.uns[key_added]``: ``params``, ``history``,
    ``summary`` (DataFrame, combination x score); ``tests``, a long
    DataFrame with columns ``combination``, ``population``, ``feature``,
    ``statistic``, ``n_observed``, ``n_predicted``, ``estimate``, ``se``,
    ``pvalue``, ``qvalue``; ``excluded_populations`` (``combination``,
    ``population``, ``cells`` per condition); and the pooled tables,
    DataFrames combination x feature: ``mean_shift``, ``median_shift``,
    ``z``, ``se`` (the null's standard error), ``route_gap`` (mean of one
    route minus the other), ``pvalue``, ``qvalue`` (Benjamini-Hochberg over
    all combinations and features), ``bliss_excess``. The pooled mean rows
    of ``tests`` are the same test as these tables.

    Examples
    --------
    At ``gamma=1`` the simulated combination raises pPlcg2 in T cells beyond
    what drugs A and B do on their own:

    >>> import sc_neuronedit as sne
    >>> adata = sne.datasets.bcrxl_combination(gamma=1.0)
    >>> sne.tl.synergy(adata, "condition", control="control",
    ...                combinations={"A+B": ("A", "B")}, random_state=0, progress=False)
    >>> res = adata.uns["synergy"]
    >>> res["mean_shift"].loc["A+B"].idxmax()
    'pPlcg2'
    >>> summary = res["summary"]  # energy_score, route_agreement, pvalue per combination

    Within the gated B, T and other cells, each population tested on its own:

    >>> sne.tl.synergy(adata, "condition", control="control", combinations={"A+B": ("A", "B")},
    ...                population_key="population", key_added="synergy_pop", progress=False)
    >>> tests = adata.uns["synergy_pop"]["tests"]
    >>> tests.sort_values("pvalue").iloc[0][["population", "feature"]].tolist()
    ['T', 'pPlcg2']
    """
    if not isinstance(combinations, Mapping) or not combinations:
        raise ValueError('combinations must be a non-empty mapping {"A+B": ("A", "B"), ...}.')
    run = CombinationRun(adata, condition_key, control=control, pairs=dict(combinations), measured=True,
               layer=layer, mask_var=mask_var, population_key=population_key,
               edit_layer=edit_layer, self_check=self_check, key_added=key_added, decode=decode,
               nonnegative=nonnegative, residual_bins=residual_bins, n_quantiles=n_quantiles,
               model=model, max_epochs=max_epochs, model_kwargs=model_kwargs,
               train_kwargs=train_kwargs, device=device, random_state=random_state,
               progress=progress, writes="uns")
    uns = run.uns()
    uns.update(run.synergy_tables(n_resamples=n_resamples, bliss_quantile=bliss_quantile))
    adata.uns[key_added] = to_uns(uns)
    from scanpy import logging as logg

    logg.info("    finished", time=run.start, deep=f"added\n    .uns[{key_added!r}], synergy tables")
