"""Drug combinations: predict A+B from A and B alone, and score synergy."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from .. import _anndata as _ad
from .._matrix import take_rows
from .._model import RESIDUAL_BINS, NeuronEditor
from .._synergy import (
    TEST_COLUMNS,
    bliss_excess,
    grouped_statistics,
    holm,
    population_tests,
    subsampled_energy,
    synergy_table,
)
from ._checks import check_input, check_min_cells
from ._editing import resolve_populations, trained_model, usable_model
from ._nonnegative import enforce_nonnegative, nonnegative_columns
from ._results import to_uns, warn_outside, write_result
from ._self_check import checked_choice, combination_check

#: Fewer cells than this in a condition is an error.
MIN_CELLS = 20
#: Control -> control edits that measure the pipeline's own distortion of each statistic.
IDENTITY_HALVINGS = 4


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
    run = _Run(adata, condition_key, control=control, pairs=pairs, measured=combination is not None,
               layer=layer, mask_var=mask_var, population_key=population_key,
               edit_layer=edit_layer, self_check=self_check, key_added=key_added, decode=decode,
               nonnegative=nonnegative,
               residual_bins=residual_bins, n_quantiles=n_quantiles, model=model, max_epochs=max_epochs,
               model_kwargs=model_kwargs, train_kwargs=train_kwargs, device=device,
               random_state=random_state, progress=progress)
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
    run = _Run(adata, condition_key, control=control, pairs=dict(combinations), measured=True,
               layer=layer, mask_var=mask_var, population_key=population_key,
               edit_layer=edit_layer, self_check=self_check, key_added=key_added, decode=decode,
               nonnegative=nonnegative,
               residual_bins=residual_bins, n_quantiles=n_quantiles, model=model, max_epochs=max_epochs,
               model_kwargs=model_kwargs, train_kwargs=train_kwargs, device=device,
               random_state=random_state, progress=progress, writes="uns")
    uns = run.uns()
    uns.update(run.synergy_tables(n_resamples=n_resamples, bliss_quantile=bliss_quantile))
    adata.uns[key_added] = to_uns(uns)
    from scanpy import logging as logg

    logg.info("    finished", time=run.start, deep=f"added\n    .uns[{key_added!r}], synergy tables")


class _Run:
    """One trained model and the cells of each condition; computes routes and scores."""

    def __init__(self, adata, condition_key, *, control, pairs, measured, layer, mask_var,
                 population_key, edit_layer, key_added, decode, nonnegative, n_quantiles, model,
                 max_epochs, model_kwargs, train_kwargs, device, random_state, progress, writes="all",
                 residual_bins=RESIDUAL_BINS, self_check=False):
        from scanpy import logging as logg

        self.X = check_input(adata, layer=layer, key_added=key_added, writes=writes, stacklevel=4)
        if decode not in NeuronEditor.decode_forms:
            raise ValueError(f"decode must be one of {NeuronEditor.decode_forms}, got {decode!r}.")
        conditions = _ad.resolve_groups(adata, condition_key, name="condition_key")
        populations = resolve_populations(adata, population_key, groupby=condition_key)
        present = set(conditions.tolist())
        singles = [control, *(d for pair in pairs.values() for d in pair)]
        wanted = singles + (list(pairs) if measured else [])
        missing = [c for c in dict.fromkeys(wanted) if c not in present]
        if missing:
            raise ValueError(f"Conditions not in adata.obs[{condition_key!r}]: {missing}; "
                             f"available: {', '.join(map(str, dict.fromkeys(conditions.tolist())))}.")
        for label, pair in pairs.items():
            if len(pair) != 2 or pair[0] == pair[1] or control in pair:
                raise ValueError(f"Combination {label!r} needs two different drugs other than the "
                                 f"control, got {pair!r}.")
        self.cells = {c: np.flatnonzero(conditions == c) for c in dict.fromkeys(wanted)}
        if populations is not None and "all" in set(populations.tolist()):
            raise ValueError(f"adata.obs[{population_key!r}] has a population named 'all', the "
                             "name of the pooled test in the synergy tables; rename it.")
        self.populations = None if populations is None else {
            c: populations[i] for c, i in self.cells.items()}
        check_min_cells({c: len(i) for c, i in self.cells.items()}, MIN_CELLS, what="the conditions",
                        fix=f"Every condition needs cells of its own in adata.obs[{condition_key!r}].")
        self.adata, self.pairs, self.control = adata, pairs, control
        self.condition_key, self.layer, self.decode = condition_key, layer, decode
        self.n_quantiles, self.random_state = n_quantiles, random_state
        self.residual_bins = residual_bins
        self.nonnegative = nonnegative
        self._nonnegative_columns = nonnegative_columns(self.X, nonnegative)
        features = _ad.resolve_mask_var(adata, mask_var)
        self.features = np.ones(adata.n_vars, bool) if features is None else features
        self.start = logg.info(f"neuron editing of {len(pairs)} drug combination(s)")

        def mask(condition):
            out = np.zeros(adata.n_obs, bool)
            out[self.cells[condition]] = True
            return out

        train = np.any([mask(c) for c in dict.fromkeys(singles)], axis=0)
        edit_layer, chosen, self.checked = checked_choice(
            adata, edit_layer=edit_layer, self_check=self_check, model=model, populations=populations,
            check=combination_check, control=mask(control),
            treated={d: mask(d) for d in dict.fromkeys(singles[1:])}, train_mask=train, layer=layer,
            mask_var=mask_var, max_epochs=max_epochs, model_kwargs=model_kwargs,
            train_kwargs=train_kwargs, decode=decode, n_quantiles=n_quantiles,
            residual_bins=residual_bins, nonnegative=nonnegative, device=device,
            random_state=random_state, progress=progress)
        # Edits within populations unless the self-check chose pooled ones; the tests stay per
        # population either way.
        self.within = chosen is not None
        if model is None:
            model = trained_model(adata, cells=train, layer=layer, mask_var=mask_var,
                                  edit_layer=edit_layer, max_epochs=max_epochs,
                                  model_kwargs=model_kwargs, train_kwargs=train_kwargs,
                                  device=device, random_state=random_state, progress=progress)
        else:
            usable_model(model, adata, edit_layer)
        self.model, self.population_key = model, population_key
        self._values = {}

    def index(self, condition, idx=None) -> np.ndarray:
        """Rows of ``adata`` of a condition's cells (or of ``idx`` among them)."""
        return self.cells[condition] if idx is None else self.cells[condition][idx]

    def rows(self, condition, idx=None) -> np.ndarray:
        """Full-width values of a condition's cells (or of ``idx`` among them)."""
        return take_rows(self.X, self.index(condition, idx))

    def _edit_onto(self, drug, cells_of, *, picks=None):
        """Edit control -> ``drug`` applied to the cells of ``cells_of``.

        ``picks`` (condition -> row positions) resamples the cells of each condition.
        """
        pick = {c: None if picks is None else picks[c] for c in (self.control, drug, cells_of)}
        edit = self._learn(self.rows(self.control, pick[self.control]), self.rows(drug, pick[drug]),
                           self.edit_labels(self.control, drug, picks=pick))
        cells = self.index(cells_of, pick[cells_of])
        return edit, self._apply(cells, edit, self.edit_labels(cells_of, picks=pick))

    def _learn(self, source, target, labels):
        return self.model.learn_edit(source, target, n_quantiles=self.n_quantiles, populations=labels,
                                     residual=self.decode == "edited_residual",
                                     residual_bins=self.residual_bins, random_state=self.random_state)

    def _apply(self, cells, edit, labels):
        """``edit`` applied to the rows ``cells`` of ``adata``, as the output is written."""
        values = self.model.apply_edit(take_rows(self.X, cells), edit, populations=labels,
                                       decode=self.decode)
        return enforce_nonnegative(values, self.X, cells, self._nonnegative_columns,
                                   self.nonnegative)

    def identity_shifts(self, drug_a, drug_b, pops, *, k: int = IDENTITY_HALVINGS) -> np.ndarray:
        """What the pipeline does to cells when nothing should change: ``k`` edits control ->
        control, each learned from one random half of the control cells to the other, applied
        to the cells the routes edit (B's, then A's); each statistic of the edited cells minus
        the cells as they are. ``(k, len(pops), len(STATISTICS), n_features)``."""
        rng = np.random.default_rng([self.random_state, 2])  # a stream of its own
        cells = np.concatenate([self.cells[drug_b], self.cells[drug_a]])
        labels = self.route_labels(drug_a, drug_b)
        before = grouped_statistics(self._scored(take_rows(self.X, cells)), labels, pops)
        n = len(self.cells[self.control])
        out = []
        for _ in range(k):
            order = rng.permutation(n)
            halves = order[: n // 2], order[n // 2:]
            with warnings.catch_warnings():  # a half's population too small: as in the reruns
                warnings.simplefilter("ignore", UserWarning)
                edit = self._learn(*(self.rows(self.control, h) for h in halves), tuple(
                    self.labels(self.control)[h] for h in halves) if self.within else None)
                after = self._scored(self._apply(cells, edit, labels if self.within else None))
            out.append(grouped_statistics(after, labels, pops) - before)
        return np.asarray(out)

    def labels(self, *conditions, picks=None):
        """Population labels of a condition's (resampled) cells; a tuple of them for several."""
        if self.populations is None:
            return None
        picks = picks or {}
        out = tuple(self.populations[c] if picks.get(c) is None else self.populations[c][picks[c]]
                    for c in conditions)
        return out if len(out) > 1 else out[0]

    def edit_labels(self, *conditions, picks=None):
        """:meth:`labels` for the edits: ``None`` when they are pooled."""
        return self.labels(*conditions, picks=picks) if self.within else None

    def routes(self, drug_a, drug_b):
        """``[(rows of B cells, A's edit on them), (rows of A cells, B's edit on them)]``."""
        if (drug_a, drug_b) not in self._values:
            out = []
            for drug, other in ((drug_a, drug_b), (drug_b, drug_a)):
                edit, values = self._edit_onto(drug, other)
                stats = self.model.edit_statistics(self.rows(other), edit,
                                                   populations=self.edit_labels(other))
                warn_outside(float(stats["outside_fraction"].mean()), f"the {other} cells", depth=2)
                out.append((self.cells[other], values))
            self._values[drug_a, drug_b] = out
        return self._values[drug_a, drug_b]

    def _scored(self, M):
        return M[:, self.features]

    def effect_size(self, drug_a, drug_b) -> float:
        ctrl = self._scored(self.rows(self.control))
        return float(np.mean([subsampled_energy(ctrl, self._scored(self.rows(d)),
                                                random_state=self.random_state)
                              for d in (drug_a, drug_b)]))

    def agreement(self, routes, drug_a=None, drug_b=None) -> dict:
        (_, first), (_, second) = routes
        pair = drug_a, drug_b
        if drug_a is None:
            (pair,) = self.pairs.values()
        first, second = self._scored(first), self._scored(second)
        return {
            "route_energy_ratio": subsampled_energy(first, second, random_state=self.random_state)
            / self.effect_size(*pair),
            "mean_difference": first.mean(0) - second.mean(0),
        }

    def synergy_tables(self, *, n_resamples: int, bliss_quantile: float) -> dict:
        if n_resamples < 2:
            raise ValueError(f"n_resamples must be at least 2, got {n_resamples}.")
        rng = np.random.default_rng(self.random_state)
        # The observed cells' resamples from a stream of their own: the pipeline's reruns, and
        # so the pooled tables, stay what they were before the observed quantiles were tested.
        rng_observed = np.random.default_rng([self.random_state, 1])

        def resample(n):
            return rng.integers(0, n, n)

        names = np.asarray(self.adata.var_names)[self.features]
        tables, summary, tests, excluded = {}, {}, [], []
        for label, (a, b) in self.pairs.items():
            routes = self.routes(a, b)
            predicted = self._scored(np.vstack([v for _, v in routes]))
            observed = self._scored(self.rows(label))
            pops, left_out, cells = self.testable_populations((self.control, a, b, label))
            excluded += [{"combination": label, "population": p, "cells": why}
                         for p, why in left_out.items()]
            predicted_labels = self.route_labels(a, b)
            observed_labels = self.labels(label) if self.populations is not None else None
            replicates, boot_stats, obs_stats = [], [], []
            for _ in range(n_resamples):
                # The whole pipeline on resampled cells: both edits relearned, both routes. The
                # routes share one resample per condition, as the real routes share the cells:
                # their errors are correlated, and independent resamples would halve the variance.
                # Resampled without regard to populations: the composition of the cells varies
                # from sample to sample too, and the pooled ("all") statistics must see it.
                picks = {c: resample(len(self.cells[c])) for c in (self.control, a, b)}
                with warnings.catch_warnings():
                    # A rerun whose resample has too few cells of a population falls back to the
                    # pooled edit for it, as the real run would have: part of the procedure's
                    # variance. Each rerun would repeat the real run's warning with other counts.
                    warnings.simplefilter("ignore", UserWarning)
                    values = [self._scored(self._edit_onto(d, o, picks=picks)[1])
                              for d, o in ((a, b), (b, a))]
                replicates.append(np.mean([v.mean(0) for v in values], axis=0))
                boot_labels = (None if predicted_labels is None else
                               np.concatenate([self.labels(o, picks=picks) for o in (b, a)]))
                boot_stats.append(grouped_statistics(np.vstack(values), boot_labels, pops))
                again = rng_observed.integers(0, len(observed), len(observed))
                obs_stats.append(grouped_statistics(
                    observed[again], None if observed_labels is None else observed_labels[again],
                    pops))
            gap = self.agreement(routes, a, b)
            table = synergy_table(observed, predicted, np.asarray(replicates),
                                  gap["mean_difference"], names)
            table["bliss_excess"] = bliss_excess(
                self._scored(self.rows(self.control)), self._scored(self.rows(a)),
                self._scored(self.rows(b)), observed, quantile=bliss_quantile)
            table["route_gap"] = gap["mean_difference"]
            tables[label] = table
            (_, first), (_, second) = routes
            route_gap = (grouped_statistics(self._scored(first), self.labels(b), pops)
                         - grouped_statistics(self._scored(second), self.labels(a), pops))
            family = population_tests(observed, observed_labels, predicted, predicted_labels,
                                      boot_stats, obs_stats, populations=pops, features=names,
                                      route_gap=route_gap,
                                      identity_shifts=self.identity_shifts(a, b, pops),
                                      cells=cells)
            # The pooled mean is the test of the wide tables (its null also holds the routes' gap).
            pooled = (family["population"] == "all") & (family["statistic"] == "mean")
            family.loc[pooled, ["estimate", "se", "pvalue"]] = table[
                ["mean_shift", "se", "pvalue"]].to_numpy()
            # One family per combination: populations x features x statistics, less the
            # quantiles with too few cells beyond them (p NaN: not tested).
            tested = family["pvalue"].notna().to_numpy()
            family["qvalue"] = np.nan
            family.loc[tested, "qvalue"] = stats.false_discovery_control(
                family.loc[tested, "pvalue"].to_numpy())
            family.insert(0, "combination", label)
            tests.append(family)
            summary[label] = {
                "drug_a": a, "drug_b": b, "n_observed": len(observed),
                "n_predicted": len(predicted),
                "energy_score": subsampled_energy(observed, predicted, random_state=self.random_state)
                / self.effect_size(a, b),
                "route_agreement": gap["route_energy_ratio"],
                "pvalue": min(1.0, float(table["pvalue"].min()) * len(table)),
                "family_pvalue": float(holm(family.loc[tested, "pvalue"].to_numpy()).min()),
                "n_tests": int(tested.sum()),
            }
        wide = {col: pd.DataFrame({lab: t[col] for lab, t in tables.items()}).T
                for col in ("mean_shift", "median_shift", "z", "se", "route_gap", "pvalue",
                            "bliss_excess")}
        # Benjamini-Hochberg over every combination and feature at once.
        p = wide["pvalue"].to_numpy()
        wide["qvalue"] = pd.DataFrame(stats.false_discovery_control(p.ravel()).reshape(p.shape),
                                      index=wide["pvalue"].index, columns=wide["pvalue"].columns)
        for df in wide.values():
            df.index.name, df.columns.name = "combination", None
        summary = pd.DataFrame(summary).T
        summary.index.name = "combination"
        summary = summary.astype({"drug_a": str, "drug_b": str, "n_observed": int,
                                  "n_predicted": int, "energy_score": float,
                                  "route_agreement": float, "pvalue": float,
                                  "family_pvalue": float, "n_tests": int})
        tests = pd.concat(tests, ignore_index=True)[list(TEST_COLUMNS)]
        excluded = pd.DataFrame(excluded, columns=["combination", "population", "cells"])
        if len(excluded):
            warnings.warn(
                f"Populations with fewer than {MIN_CELLS} cells in a condition are not tested: "
                + "; ".join(f"{r.population!r} in {r.combination!r} ({r.cells})"
                            for r in excluded.itertuples()) + ".", UserWarning, stacklevel=4)
        return {"summary": summary, **wide, "tests": tests, "excluded_populations": excluded}

    def testable_populations(self, conditions) -> tuple[list[str], dict[str, str], list[int]]:
        """``["all", populations with enough cells in every condition]``, why the others are
        left out, and the fewest cells each kept one has in any condition (which quantiles
        are tested, see :func:`~sc_neuronedit._synergy.statistics_tested`)."""
        fewest = [min(len(self.cells[c]) for c in conditions)]
        if self.populations is None:
            return ["all"], {}, fewest
        names = sorted(set().union(*(self.populations[c] for c in conditions)))
        kept, left_out = ["all"], {}
        for p in names:
            counts = {c: int(np.sum(self.populations[c] == p)) for c in conditions}
            if min(counts.values()) < MIN_CELLS:
                left_out[p] = ", ".join(f"{c}: {n}" for c, n in counts.items())
            else:
                kept.append(p)
                fewest.append(min(counts.values()))
        return kept, left_out, fewest

    def route_labels(self, drug_a, drug_b):
        """Population labels of the predicted cells, in the order of :meth:`routes`."""
        if self.populations is None:
            return None
        return np.concatenate([self.labels(drug_b), self.labels(drug_a)])

    def uns(self) -> dict:
        m = self.model
        return {
            "params": {"condition_key": self.condition_key, "control": self.control,
                       "combinations": {k: list(v) for k, v in self.pairs.items()},
                       "layer": self.layer, "population_key": self.population_key,
                       "within_populations": self.within,
                       "decode": self.decode, "nonnegative": self.nonnegative,
                       "n_quantiles": self.n_quantiles, "residual_bins": self.residual_bins,
                       "n_features": m.n_features, **m.config,
                       "edit_layer": m.edit_layer, "train": m.train_params},
            "history": m.history.to_dict(),
            **({} if self.checked is None else dict(zip(("self_check", "self_check_summary"),
                                                        self.checked))),
        }
