"""Preprocessing, as explicit steps (layer in, layer out)."""

from ._arcsinh import arcsinh

__all__ = ["arcsinh"]
