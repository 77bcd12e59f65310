"""Preprocessing, as explicit steps (layer in, layer out; labels into ``.obs``)."""

from ._arcsinh import arcsinh
from ._populations import populations

__all__ = ["arcsinh", "populations"]
