"""Plots (matplotlib). Each function returns its figure; nothing is shown or saved."""

from ._edit import edit_curves
from ._prediction import distributions, mean_scatter
from ._training import loss

__all__ = ["distributions", "edit_curves", "loss", "mean_scatter"]
