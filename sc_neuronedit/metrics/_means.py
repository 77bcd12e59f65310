from __future__ import annotations

import numpy as np
from scipy import sparse, stats


def _moment(X, which: str) -> np.ndarray:
    if sparse.issparse(X):
        mean = np.asarray(X.mean(axis=0)).ravel()
        if which == "mean":
            return mean
        sq = np.asarray(X.multiply(X).mean(axis=0)).ravel()
        return (sq - mean**2) * X.shape[0] / max(X.shape[0] - 1, 1)
    X = np.asarray(X, dtype=np.float64)
    return X.mean(axis=0) if which == "mean" else X.var(axis=0, ddof=1)


def _select(X, genes):
    return X if genes is None else X[:, genes]


def _r2_of(pred, real, genes, which: str) -> float:
    a = _moment(_select(real, genes), which)
    b = _moment(_select(pred, genes), which)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.linregress(a, b).rvalue ** 2)


def r2_means(pred, real, genes=None) -> float:
    """Squared Pearson correlation of per-feature means, predicted vs real.

    Parameters
    ----------
    pred, real
        Cells x features (dense or sparse) of predicted and real treated cells.
    genes
        Optional column index (integers or boolean mask) to restrict to, e.g. DEGs.
    """
    return _r2_of(pred, real, genes, "mean")


def r2_variances(pred, real, genes=None) -> float:
    """Squared Pearson correlation of per-feature variances, predicted vs real."""
    return _r2_of(pred, real, genes, "var")


def r2_change(pred, real, control, genes=None) -> float:
    """Coefficient of determination of the predicted change of the means.

    ``y = mean(real) - mean(control)``, ``ŷ = mean(pred) - mean(control)``,
    ``R² = 1 - Σ(y - ŷ)² / Σ(y - ȳ)²``. Unlike :func:`r2_means` it penalises a
    change of the right shape but the wrong size, and can be negative.
    """
    c = _moment(_select(control, genes), "mean")
    y = _moment(_select(real, genes), "mean") - c
    yhat = _moment(_select(pred, genes), "mean") - c
    ss_tot = np.sum((y - y.mean()) ** 2)
    return float(1.0 - np.sum((y - yhat) ** 2) / ss_tot) if ss_tot > 0 else float("nan")
