"""Neuron editing for single-cell data: predict conditions nobody measured.

Train an autoencoder, learn per-neuron quantile shifts between a source and a
target population, apply them to another population and decode
(Amodio et al., "Beyond GANs: Transforming without a Target Distribution").
"""

import importlib

__version__ = "0.1.0"

# Submodules and names load on first use (PEP 562): importing torch, scanpy and
# numba takes seconds, which ``neuronedit --help`` and ``--version`` must not wait for.
_SUBMODULES = ("datasets", "metrics", "pl", "pp", "tl")
_NAMES = {"Edit": "._learning", "NeuronEditor": "._model", "QuantileEdit": "._edit",
          "fit_quantile_edit": "._edit", "read_fcs": "._fcs", "write_fcs": "._fcs"}

__all__ = ["Edit", "NeuronEditor", "QuantileEdit", "datasets", "fit_quantile_edit", "metrics", "pl", "pp",
           "read_fcs", "tl", "write_fcs"]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
