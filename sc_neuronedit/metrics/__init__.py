"""Evaluation metrics, implemented once and used by tests, benchmarks and tutorials.

All take arrays (cells x features); only :func:`top_degs` takes an AnnData.
:func:`mean_shift_prediction` is the gene-space baseline every comparison uses.
"""

from ._baselines import group_balanced_mean, mean_shift_prediction
from ._distribution import (
    emd_per_feature,
    energy_distance,
    mad_per_feature,
    pca_energy_distance,
    spread_gap,
)
from ._genes import top_degs
from ._means import r2_change, r2_means, r2_variances

__all__ = [
    "emd_per_feature",
    "energy_distance",
    "group_balanced_mean",
    "mad_per_feature",
    "mean_shift_prediction",
    "pca_energy_distance",
    "r2_change",
    "r2_means",
    "r2_variances",
    "spread_gap",
    "top_degs",
]
