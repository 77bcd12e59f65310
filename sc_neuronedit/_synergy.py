"""Synergy statistics on arrays: observed vs predicted combination, per feature.

Knows nothing of AnnData or of the model: the prediction and its bootstrap
replicates come in as arrays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

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
