"""Synergy statistics on arrays: observed vs predicted combination, per feature.

Knows nothing of AnnData or of the model: the prediction and its bootstrap
replicates come in as arrays.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from scipy import special, stats

from .metrics._distribution import _dense, energy_distance

#: Cells per sample for energy distances (all pairs are computed).
ENERGY_MAX_CELLS = 2000


def subsampled_energy(X, Y, *, random_state: int = 0) -> float:
    """Energy distance on at most :data:`ENERGY_MAX_CELLS` cells per side."""
    rng = np.random.default_rng(random_state)

    def pick(M):
        M = _dense(M)
        if len(M) <= ENERGY_MAX_CELLS:
            return M
        return M[rng.choice(len(M), ENERGY_MAX_CELLS, replace=False)]

    return energy_distance(pick(X), pick(Y))


def bliss_excess(control, a, b, ab, *, quantile: float = 0.95) -> np.ndarray:
    """Per feature: observed minus Bliss-expected share of responding cells.

    A cell responds in a feature when it lies beyond the control's
    ``quantile`` (above it when the combination raises the feature on
    average, below the ``1 - quantile`` one when it lowers it: the readout
    follows the direction of the combined effect, also where neither drug
    alone moves the feature). Responses are
    rescaled so that control is 0: ``r = (f - f_control) / (1 - f_control)``,
    and Bliss independence expects ``r_A + r_B - r_A r_B`` for the
    combination. Positive: more responders than independence predicts.
    """
    control, a, b, ab = (_dense(M) for M in (control, a, b, ab))
    up = ab.mean(0) >= control.mean(0)
    hi, lo = np.quantile(control, quantile, axis=0), np.quantile(control, 1 - quantile, axis=0)

    def share(M):
        return np.where(up, (M > hi).mean(0), (M < lo).mean(0))

    f0 = share(control)
    scale = np.maximum(1 - f0, 1e-12)
    r_a, r_b, r_ab = ((share(M) - f0) / scale for M in (a, b, ab))
    return r_ab - (r_a + r_b - r_a * r_b)


def synergy_table(observed, predicted, replicates, route_gap, features) -> pd.DataFrame:
    """Per-feature signed shifts of observed vs predicted and their p-values.

    Parameters
    ----------
    observed, predicted
        Cells x features: the measured combination and the prediction.
    replicates
        Replicates x features: the prediction's mean per feature when the
        whole pipeline (cells -> edits -> prediction) is rerun on resampled
        cells. Their spread is the prediction's sampling error; the observed
        mean's standard error comes from ``observed`` itself.
    route_gap
        Per feature, the mean of one route's prediction minus the other's
        (A's edit on B cells vs B's edit on A cells). Without interaction
        both estimate the same thing, so half their gap is an estimate of the
        prediction's error beyond sampling; it enters the null's variance.
    features
        Feature names.

    Returns
    -------
    DataFrame indexed by feature: ``mean_shift``, ``median_shift`` (observed
    minus predicted; positive = more than the independent expectation),
    ``z``, ``pvalue`` (two-sided, against a t distribution with
    Welch-Satterthwaite degrees of freedom, see :func:`welch_df`) and ``se`` (the null's standard
    error).
    """
    observed, predicted = _dense(observed), _dense(predicted)
    replicates = np.asarray(replicates)
    mean_shift = observed.mean(0) - predicted.mean(0)
    var_boot = np.var(replicates, axis=0, ddof=1)
    var_obs = observed.var(0, ddof=1) / len(observed)
    var = var_boot + var_obs + (np.asarray(route_gap) / 2) ** 2
    se = np.sqrt(np.maximum(var, 1e-12))
    z = mean_shift / se
    df = welch_df(var, (var_boot, len(replicates) - 1), (var_obs, len(observed) - 1))
    return pd.DataFrame({
        "mean_shift": mean_shift,
        "median_shift": np.median(observed, 0) - np.median(predicted, 0),
        "z": z,
        "pvalue": 2 * stats.t.sf(np.abs(z), df),
        "se": se,
    }, index=pd.Index(np.asarray(features).astype(str), name="feature"))


def welch_df(total, *parts) -> np.ndarray:
    """Welch-Satterthwaite degrees of freedom of a sum of estimated variances.

    The variance behind ``z`` is itself estimated, mostly from a few dozen
    bootstrap replicates, so ``z`` has heavier tails than a normal: with 30
    replicates the normal reference doubles the rate of p below 0.002 (the
    Bonferroni threshold for 24 features), which showed as a 6.5 % false-positive
    rate at a nominal 5 % in ``benchmarks/synergy_calibration.py``. ``parts``
    are ``(variance, degrees of freedom)`` pairs; terms of ``total`` not in
    ``parts`` count as known.
    """
    denom = sum(v**2 / max(dof, 1) for v, dof in parts)
    return np.asarray(total) ** 2 / np.maximum(denom, 1e-300)


#: The statistics tested per population and feature: the mean and three quantiles.
STATISTICS = ("mean", "q10", "q50", "q90")
_QUANTILES = (0.1, 0.5, 0.9)

#: Cells a quantile needs beyond it (on its shorter side) in every condition of a population
#: to be tested. The sample q-quantile moves with the count of cells below it, a binomial
#: Bin(n, q); a z of it is t- or normal-distributed only up to that count's skewness and
#: kurtosis, whose error in the two-sided tail probability at the z of about ±4 that Holm
#: needs in a family of hundreds of tests (Edgeworth, second order) is about
#: ``23 / (n min(q, 1 - q))`` times the nominal rate at q = 0.1: fewer than ~25 cells beyond
#: the quantile and a test's false-positive rate at that threshold may double. Fixed from
#: that bound, not fitted to any benchmark.
MIN_TAIL_CELLS = 25

#: Columns of the tidy ``tests`` table, in order.
TEST_COLUMNS = ("combination", "population", "feature", "statistic", "n_observed", "n_predicted",
                "estimate", "se", "pvalue", "qvalue")


def distribution_statistics(M) -> np.ndarray:
    """:data:`STATISTICS` of each column of ``M``: ``(len(STATISTICS), n_features)``.

    Quantiles as well as the mean, because an interaction that moves only a
    subset of a population's cells shifts one tail far more than the mean.
    The quantiles are Harrell-Davis estimates (a Beta-weighted mean of all
    order statistics): the sample quantile takes one of a few values over
    bootstrap resamples, so its bootstrap variance is noisy and sometimes far
    too small, which gave p-values far below their nominal rate.
    """
    M = np.sort(_dense(M), axis=0)
    return np.vstack([M.mean(0)[None], harrell_davis_weights(len(M)) @ M])


@functools.lru_cache(maxsize=64)
def harrell_davis_weights(n: int) -> np.ndarray:
    """``(len(_QUANTILES), n)`` weights of the sorted values for Harrell-Davis quantiles."""
    q = np.asarray(_QUANTILES)[:, None]
    # the Beta cdf itself (stats.beta.cdf's argument checks cost more than the cdf at small n,
    # and every rerun's population sizes differ, so the cache misses often)
    out = np.diff(special.betainc(q * (n + 1), (1 - q) * (n + 1), np.arange(n + 1) / n), axis=1)
    out.flags.writeable = False
    return out


def statistics_tested(cells) -> np.ndarray:
    """Which :data:`STATISTICS` are tested in populations of ``cells`` cells (the fewest in
    any condition): ``(len(cells), len(STATISTICS))``, the mean always, a quantile ``q``
    where ``cells * min(q, 1 - q) >= MIN_TAIL_CELLS``."""
    cells = np.asarray(cells, dtype=float)[:, None]
    tail = np.round(np.minimum(_QUANTILES, 1 - np.asarray(_QUANTILES)), 12)  # 1 - 0.9 < 0.1
    return np.hstack([np.ones_like(cells, dtype=bool), cells * tail >= MIN_TAIL_CELLS])


def grouped_statistics(M, labels, groups) -> np.ndarray:
    """:func:`distribution_statistics` of the rows of each group, ``"all"`` = every row.

    Returns ``(len(groups), len(STATISTICS), n_features)``; a group without rows is NaN.
    """
    M, labels = _dense(M), np.asarray(labels)
    out = np.full((len(groups), len(STATISTICS), M.shape[1]), np.nan)
    for i, g in enumerate(groups):
        rows = slice(None) if g == "all" else labels == g
        if g == "all" or rows.any():
            out[i] = distribution_statistics(M[rows])
    return out


def population_tests(observed, observed_labels, predicted, predicted_labels, replicates,
                     observed_replicates, *, populations, features, route_gap=None,
                     identity_shifts=None, cells=None) -> pd.DataFrame:
    """Observed minus predicted :data:`STATISTICS` per population and feature, with p-values.

    Parameters
    ----------
    observed, predicted
        Cells x features: the measured combination and the no-interaction prediction.
    observed_labels, predicted_labels
        Population of each observed and predicted cell.
    replicates
        ``(n_resamples, len(populations), len(STATISTICS), n_features)``: the
        prediction's statistics when the whole pipeline (cells -> edits ->
        prediction) is rerun on bootstrap resamples; their spread is the
        prediction's standard error.
    observed_replicates
        The same shape, from bootstrap resamples of the observed cells; used for
        the quantiles' standard error (the mean's is ``sd / sqrt(n)``).
    populations
        The population labels to test; ``"all"`` means every cell (the pooled test).
    features
        Feature names.
    route_gap
        The same shape as one replicate: each statistic of one route's prediction
        minus the other's. Half of it estimates the prediction's error beyond
        sampling and enters the null's variance, as in :func:`synergy_table` (a
        bootstrap sees the edit's variance, not its bias, which shows most in the
        tails).
    identity_shifts
        ``(k, len(populations), len(STATISTICS), n_features)``: each statistic of
        cells passed through an edit that should change nothing (control -> control,
        learned on random halves of the control cells) minus the same cells as they
        are, one per halving. Its squared mean is the pipeline's own distortion of
        that statistic (found on BCR-XL: a small population's lower tail of a type
        marker moved by 5 SE in both routes alike, where neither the bootstrap nor
        the route gap sees it); :func:`distortion_variance` enters the null's
        variance.
    cells
        Per population, the fewest cells it has in any condition the observation and the
        prediction are made from (control, each drug, the combination). A quantile is
        tested only where enough cells lie beyond it (:func:`statistics_tested`,
        :data:`MIN_TAIL_CELLS`); its ``pvalue`` is NaN elsewhere. ``None`` tests every row.

    Returns
    -------
    Long DataFrame with columns ``population``, ``feature``, ``statistic``,
    ``n_observed``, ``n_predicted``, ``estimate`` (observed minus predicted),
    ``se`` and ``pvalue`` (two-sided, against a t distribution with
    Welch-Satterthwaite degrees of freedom, see :func:`welch_df`, each bootstrap
    variance's own counted from the reruns' kurtosis; a z of a bootstrap SE, since
    30 reruns cannot give an empirical p below 1/31). Quantiles are Harrell-Davis
    estimates (:func:`distribution_statistics`).
    """
    observed, predicted = _dense(observed), _dense(predicted)
    observed_labels, predicted_labels = np.asarray(observed_labels), np.asarray(predicted_labels)
    replicates, observed_replicates = np.asarray(replicates), np.asarray(observed_replicates)
    estimate = (grouped_statistics(observed, observed_labels, populations)
                - grouped_statistics(predicted, predicted_labels, populations))
    var_boot = np.var(replicates, axis=0, ddof=1)
    var_obs = np.var(observed_replicates, axis=0, ddof=1)
    df_obs = _effective_dof(observed_replicates)
    n_obs = np.array([len(observed) if p == "all" else int(np.sum(observed_labels == p))
                      for p in populations])
    n_pred = np.array([len(predicted) if p == "all" else int(np.sum(predicted_labels == p))
                       for p in populations])
    for i, p in enumerate(populations):  # the mean's own SE is exact: no bootstrap noise
        rows = observed if p == "all" else observed[observed_labels == p]
        var_obs[i, 0] = rows.var(0, ddof=1) / len(rows)
        df_obs[i, 0] = len(rows) - 1
    var = var_boot + var_obs
    if route_gap is not None:  # a known term: no degrees of freedom of its own
        var = var + (np.asarray(route_gap) / 2) ** 2
    if identity_shifts is not None:  # likewise
        var = var + distortion_variance(identity_shifts)
    se = np.sqrt(np.maximum(var, 1e-12))
    # A bootstrap variance from B reruns has B - 1 degrees of freedom only if the reruns are
    # normal; heavy tails make it noisier (Var s^2 = sigma^4 (2 / (B - 1) + kurtosis / B)).
    # The excess kurtosis is pooled over features, per population and statistic.
    dof = var**2 / np.maximum(var_boot**2 / _effective_dof(replicates) + var_obs**2 / df_obs,
                              1e-300)
    pvalue = 2 * stats.t.sf(np.abs(estimate / se), dof)
    if cells is not None:  # too few cells beyond a quantile: its z is not t-distributed
        pvalue = np.where(statistics_tested(cells)[:, :, None], pvalue, np.nan)
    shape = estimate.shape
    grid = np.indices(shape).reshape(3, -1)
    pops, stat_names = np.asarray(populations, dtype=object), np.asarray(STATISTICS, dtype=object)
    return pd.DataFrame({
        "population": pops[grid[0]].astype(str),
        "feature": np.asarray(features).astype(str)[grid[2]],
        "statistic": stat_names[grid[1]].astype(str),
        "n_observed": n_obs[grid[0]],
        "n_predicted": n_pred[grid[0]],
        "estimate": estimate.ravel(),
        "se": se.ravel(),
        "pvalue": pvalue.ravel(),
    })


def distortion_variance(shifts) -> np.ndarray:
    """Squared systematic shift of ``k`` noisy measurements of it (first axis): the squared
    mean less its own sampling variance (``var / k``), so that pure noise adds nothing on
    average; never negative."""
    shifts = np.asarray(shifts, dtype=float)
    k = len(shifts)
    if k < 2:
        raise ValueError(f"Need at least 2 identity shifts to tell distortion from noise, got {k}.")
    mean, var = shifts.mean(axis=0), shifts.var(axis=0, ddof=1)
    return np.maximum(mean**2 - var / k, 0.0)


def _effective_dof(replicates) -> np.ndarray:
    """Degrees of freedom of the variance of ``replicates`` (first axis) per population and
    statistic, broadcast over features: ``2 / (2 / (B - 1) + excess kurtosis / B)``."""
    n = len(replicates)
    kurt = np.nanmean(stats.kurtosis(replicates, axis=0, bias=False), axis=-1, keepdims=True)
    kurt = np.clip(np.nan_to_num(kurt), 0, None)
    return np.broadcast_to(2 / (2 / max(n - 1, 1) + kurt / n), replicates.shape[1:]).copy()


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error over all of ``pvalues``)."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    m = len(p)
    stepped = np.maximum.accumulate(np.minimum((m - np.arange(m)) * p[order], 1.0))
    out = np.empty(m)
    out[order] = stepped
    return out
