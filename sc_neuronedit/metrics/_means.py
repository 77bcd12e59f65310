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

    Returns
    -------
    R² in ``[0, 1]``; NaN when the means of either side are all equal.

    Examples
    --------
    >>> import numpy as np
    >>> import sc_neuronedit as sne
    >>> real = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    >>> sne.metrics.r2_means(2 * real, real)  # the right shape is enough
    1.0
    """
    return _r2_of(pred, real, genes, "mean")


def r2_variances(pred, real, genes=None) -> float:
    """Squared Pearson correlation of per-feature variances, predicted vs real.

    Variances with ``ddof=1``.

    Parameters
    ----------
    pred, real
        Cells x features (dense or sparse) of predicted and real treated cells.
    genes
        Optional column index (integers or boolean mask) to restrict to, e.g. DEGs.

    Returns
    -------
    R² in ``[0, 1]``; NaN when the variances of either side are all equal.

    Examples
    --------
    >>> import numpy as np
    >>> import sc_neuronedit as sne
    >>> real = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    >>> sne.metrics.r2_variances(2 * real, real)
    1.0
    """
    return _r2_of(pred, real, genes, "var")


def r2_change(pred, real, control, genes=None) -> float:
    """Coefficient of determination of the predicted change of the means.

    ``y = mean(real) - mean(control)``, ``ŷ = mean(pred) - mean(control)``,
    ``R² = 1 - Σ(y - ŷ)² / Σ(y - ȳ)²``. Unlike :func:`r2_means` it penalises a
    change of the right shape but the wrong size, and can be negative.

    Parameters
    ----------
    pred, real
        Cells x features (dense or sparse) of predicted and real treated cells.
    control
        Cells x features of the control cells both changes are measured from.
    genes
        Optional column index (integers or boolean mask) to restrict to, e.g. DEGs.

    Returns
    -------
    R² (at most 1, can be negative); NaN when the real change is the same for
    every feature.

    Examples
    --------
    A predicted change twice the real one: perfectly correlated, but wrong.

    >>> import numpy as np
    >>> import sc_neuronedit as sne
    >>> control = np.zeros((2, 3))
    >>> real, pred = control + [1.0, 2.0, 3.0], control + [2.0, 4.0, 6.0]
    >>> sne.metrics.r2_means(pred, real), sne.metrics.r2_change(pred, real, control)
    (1.0, -6.0)
    """
    c = _moment(_select(control, genes), "mean")
    y = _moment(_select(real, genes), "mean") - c
    yhat = _moment(_select(pred, genes), "mean") - c
    ss_tot = np.sum((y - y.mean()) ** 2)
    return float(1.0 - np.sum((y - yhat) ** 2) / ss_tot) if ss_tot > 0 else float("nan")
