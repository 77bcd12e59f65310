"""Plots (matplotlib). Each function returns its figure; nothing is shown or saved."""

from ._batch import batch_densities
from ._edit import edit_curves
from ._prediction import distributions, mean_scatter
from ._synergy import synergy
from ._training import loss

__all__ = ["batch_densities", "distributions", "edit_curves", "loss", "mean_scatter", "synergy"]
