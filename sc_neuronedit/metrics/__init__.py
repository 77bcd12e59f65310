"""Evaluation metrics, implemented once and used by tests, benchmarks and tutorials.

All take arrays (cells x features); only :func:`top_degs` takes an AnnData.
"""

from ._distribution import emd_per_feature, energy_distance, pca_energy_distance
from ._genes import top_degs
from ._means import r2_change, r2_means, r2_variances

__all__ = [
    "emd_per_feature",
    "energy_distance",
    "pca_energy_distance",
    "r2_change",
    "r2_means",
    "r2_variances",
    "top_degs",
]
