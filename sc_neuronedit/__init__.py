"""Neuron editing for single-cell data: predict conditions nobody measured.

Train an autoencoder, learn per-neuron quantile shifts between a source and a
target population, apply them to another population and decode
(Amodio et al., "Beyond GANs: Transforming without a Target Distribution").
"""

from . import datasets, metrics, pl, pp, tl
from ._edit import QuantileEdit, fit_quantile_edit
from ._fcs import read_fcs
from ._model import Edit, NeuronEditor

__version__ = "0.1.0"

__all__ = ["Edit", "NeuronEditor", "QuantileEdit", "datasets", "fit_quantile_edit", "metrics", "pl", "pp",
           "read_fcs", "tl"]
