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
