from __future__ import annotations

import numpy as np

from ._distribution import _dense


def group_balanced_mean(X, groups=None) -> np.ndarray:
    """Per-feature mean in which every group weighs the same (plain mean without groups).

    Parameters
    ----------
    X
        Cells x features (dense or sparse).
    groups
        Per-cell group labels; ``None`` for the plain mean.

    Returns
    -------
    ``(n_features,)`` array: the mean of the group means.

    Examples
    --------
    >>> import numpy as np
    >>> import sc_neuronedit as sne
    >>> X = np.array([[0.0], [0.0], [0.0], [4.0]])
    >>> sne.metrics.group_balanced_mean(X, ["a", "a", "a", "b"])
    array([2.])
    >>> sne.metrics.group_balanced_mean(X)
    array([1.])
    """
    X = _dense(X)
    if groups is None:
        return X.mean(axis=0)
    groups = np.asarray(groups)
    return np.mean([X[groups == g].mean(axis=0) for g in np.unique(groups)], axis=0)


def mean_shift_prediction(control, source, target, *, source_groups=None, target_groups=None):
    """Baseline: add the mean change from ``source`` to ``target`` to the ``control`` cells.

    With groups, each group weighs the same in both means, as in
    :func:`sc_neuronedit.tl.predict_perturbation`, so the baseline sees the same
    effect without the change of composition.

    Parameters
    ----------
    control
        Cells x features to shift, e.g. the control cells of the held-out group.
    source, target
        Cells x features before and after the change, e.g. control and
        treated cells of the other groups.
    source_groups, target_groups
        Per-cell group labels of ``source`` and ``target``; see
        :func:`group_balanced_mean`.

    Returns
    -------
    Dense array shaped like ``control``.

    Examples
    --------
    >>> import numpy as np
    >>> import sc_neuronedit as sne
    >>> control = np.array([[0.0, 0.0]])
    >>> source, target = np.array([[1.0, 1.0]]), np.array([[2.0, 3.0]])
    >>> sne.metrics.mean_shift_prediction(control, source, target)
    array([[1., 2.]])
    """
    shift = group_balanced_mean(target, target_groups) - group_balanced_mean(source, source_groups)
    return _dense(control) + shift
