from __future__ import annotations

import numpy as np
from scipy import sparse, stats
from scipy.spatial.distance import cdist


def _dense(X) -> np.ndarray:
    return X.toarray() if sparse.issparse(X) else np.asarray(X, dtype=np.float64)


def energy_distance(X, Y) -> float:
    """Euclidean energy distance (V-statistic) between two samples.

    ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` with Euclidean (not squared)
    distances; the squared form would only compare means.

    Parameters
    ----------
    X, Y
        Cells x features (dense or sparse), same number of features.

    Returns
    -------
    The distance, ``0`` for identical samples.

    Examples
    --------
    >>> import numpy as np
    >>> import sc_neuronedit as sne
    >>> sne.metrics.energy_distance(np.zeros((2, 1)), np.ones((2, 1)))
    2.0
    """
    X, Y = _dense(X), _dense(Y)
    if len(X) == 0 or len(Y) == 0:
        raise ValueError("energy_distance needs two non-empty samples.")
    return float(2 * cdist(X, Y).mean() - cdist(X, X).mean() - cdist(Y, Y).mean())


def pca_energy_distance(
    pred, real, control, *, n_comps: int = 50, random_state: int = 0
) -> tuple[float, float]:
    """Energy distance of predicted vs real treated cells in a PCA of the real cells.

    The PCA (``n_comps`` components, centred) is fitted on the real control and
    treated cells of the group only, so the prediction cannot shape the space it
    is judged in.

    Parameters
    ----------
    pred
        Predicted treated cells x features.
    real
        Real treated cells x features.
    control
        Real control cells x features.
    n_comps
        Number of principal components (at most ``min(n_cells, n_features) - 1``).
    random_state
        Seed of the random halves of the noise floor.

    Returns
    -------
    ``(distance, noise_floor)``: the noise floor is the energy distance between
    two random halves of the real treated cells. The energy distance of two
    samples from one distribution shrinks with their sizes (about as ``1/n``),
    so halves score roughly twice what a perfect prediction of all the real
    cells would: a distance below the floor is as good as sampling noise allows.

    Examples
    --------
    >>> import numpy as np
    >>> import sc_neuronedit as sne
    >>> rng = np.random.default_rng(0)
    >>> control = rng.normal(size=(200, 10))
    >>> real = rng.normal(size=(200, 10)) + 1.0
    >>> pred = rng.normal(size=(200, 10)) + 1.0
    >>> distance, floor = sne.metrics.pca_energy_distance(pred, real, control, n_comps=5)
    >>> no_change, _ = sne.metrics.pca_energy_distance(control, real, control, n_comps=5)
    >>> bool(distance < floor < no_change)
    True
    """
    real, control, pred = _dense(real), _dense(control), _dense(pred)
    ref = np.vstack([control, real])
    mean = ref.mean(axis=0)
    k = min(n_comps, min(ref.shape) - 1)
    _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
    comps = vt[:k].T

    def project(M):
        return (M - mean) @ comps

    p_real, p_pred = project(real), project(pred)
    rng = np.random.default_rng(random_state)
    order = rng.permutation(len(p_real))
    half = len(order) // 2
    floor = energy_distance(p_real[order[:half]], p_real[order[half:]])
    return energy_distance(p_pred, p_real), floor


def emd_per_feature(X, Y) -> np.ndarray:
    """1-D earth mover's distance between ``X`` and ``Y`` for each column.

    Parameters
    ----------
    X, Y
        Cells x features (dense or sparse), same number of features.

    Returns
    -------
    ``(n_features,)`` array of distances.

    Examples
    --------
    >>> import numpy as np
    >>> import sc_neuronedit as sne
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0]])
    >>> Y = np.array([[1.0, 0.0], [2.0, 0.0]])
    >>> sne.metrics.emd_per_feature(X, Y)
    array([1., 0.])
    """
    X, Y = _dense(X), _dense(Y)
    if X.shape[1] != Y.shape[1]:
        raise ValueError("X and Y must have the same number of columns.")
    return np.array([stats.wasserstein_distance(X[:, j], Y[:, j]) for j in range(X.shape[1])])


#: A MAD below this counts as no spread: relative distances are taken from at least this.
MIN_SPREAD = 1e-3


def mad_per_feature(X) -> np.ndarray:
    """Median absolute deviation from the median of each column (unscaled).

    Parameters
    ----------
    X
        Cells x features (dense or sparse).

    Returns
    -------
    ``(n_features,)`` array.

    Examples
    --------
    >>> import numpy as np
    >>> import sc_neuronedit as sne
    >>> sne.metrics.mad_per_feature(np.array([[0.0], [1.0], [3.0]]))
    array([1.])
    """
    X = _dense(X)
    return np.median(np.abs(X - np.median(X, axis=0)), axis=0)


def spread_gap(X, batches, *, goal=None, per_batch: bool = False):
    """How far the per-feature spread of one sample differs between batches.

    For each batch ``b`` and feature ``j``, ``m[b, j]`` is the MAD
    (:func:`mad_per_feature`) of the rows of batch ``b``, and ``g[j]`` the goal
    spread: the mean of ``m[:, j]`` over batches (``goal=None``, every batch
    weighing the same), one batch's ``m[goal, j]`` (``goal`` a batch label), or
    given values (``goal`` an array). The gap of batch ``b`` is the mean over
    features of ``|m[b, j] - g[j]| / max(g[j], 1e-3)`` (a MAD below ``1e-3`` is
    no spread); the spread gap is the mean of the batches' gaps (the goal
    batch, at zero by construction, left out). ``0`` when every batch has the
    goal's spread; lower is better.

    A batch effect changes spreads as well as locations, so a correction must
    change each batch's spread -- towards the goal's. A measure of how much the
    spread changed (the change of MAD) cannot tell that from damage; this one
    can. Pass the cells of *one* sample (a donor, the reference) in every batch:
    pooled over samples, the gap would also score differences of composition.

    Parameters
    ----------
    X
        Cells x features (dense or sparse) of one sample in several batches.
    batches
        Batch label per row.
    goal
        ``None`` (the batch-averaged spread), a batch label, or ``(n_features,)``
        goal MADs.
    per_batch
        Return each batch's gap instead of their mean.

    Returns
    -------
    The spread gap (a float), or with ``per_batch=True`` a :class:`pandas.Series`
    of each batch's gap indexed by batch (sorted; without the goal batch).

    Examples
    --------
    Two batches of one sample; the second's spread is twice the first's. From
    their mean spread (1.5), each is a third away; from batch ``"a"``'s, ``"b"``
    is 100 % away:

    >>> import numpy as np
    >>> import sc_neuronedit as sne
    >>> X = np.array([[0.0], [1.0], [2.0], [0.0], [2.0], [4.0]])
    >>> batches = np.array(["a", "a", "a", "b", "b", "b"])
    >>> round(sne.metrics.spread_gap(X, batches), 4)
    0.3333
    >>> sne.metrics.spread_gap(X, batches, goal="a")
    1.0
    """
    import pandas as pd

    X, batches = _dense(X), np.asarray(batches)
    if len(batches) != len(X):
        raise ValueError(f"batches has {len(batches)} labels for {len(X)} rows.")
    levels = np.unique(batches)
    mads = pd.DataFrame([mad_per_feature(X[batches == b]) for b in levels], index=levels)
    if goal is None:
        target = mads.mean(axis=0).to_numpy()
    elif np.ndim(goal) == 0:
        if goal not in mads.index:
            raise ValueError(f"goal batch {goal!r} not among the batches {list(levels)}.")
        target = mads.loc[goal].to_numpy()
        mads = mads.drop(index=goal)
    else:
        target = np.asarray(goal, dtype=np.float64)
        if target.shape != (X.shape[1],):
            raise ValueError(f"goal must hold one MAD per feature ({X.shape[1]}), got {target.shape}.")
    gaps = (mads - target).abs().div(np.maximum(target, MIN_SPREAD), axis=1).mean(axis=1)
    return gaps if per_batch else float(gaps.mean())
