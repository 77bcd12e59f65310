"""Plots (matplotlib). Each function takes ``ax=``, ``show=`` and ``save=`` and
returns its figure, like scanpy's plotting functions."""

from ._batch import batch_densities
from ._edit import edit_curves
from ._prediction import distributions, reg_mean
from ._self_check import self_check
from ._synergy import synergy, synergy_distributions
from ._training import loss

__all__ = ["batch_densities", "distributions", "edit_curves", "loss", "reg_mean", "self_check",
           "synergy", "synergy_distributions"]
