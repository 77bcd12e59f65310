from __future__ import annotations

import numpy as np

from ._distribution import _dense


def group_balanced_mean(X, groups=None) -> np.ndarray:
    """Per-feature mean in which every group weighs the same (plain mean without groups)."""
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
    """
    shift = group_balanced_mean(target, target_groups) - group_balanced_mean(source, source_groups)
    return _dense(control) + shift
