"""What predictions may do below zero: one policy shared by every ``tl`` function.

A decoder's output is a regression, not a count model: on log-normalised
expression it puts values slightly below zero where the input was zero, and
never exactly zero. scanpy's fold changes take ``log2(expm1(mean))``, so a
negative mean becomes NaN (``invalid value encountered in log2``) and a gene
that is absent in the control but a tiny bit positive in the prediction gets
an absurd fold change. The policy is decided per feature from the input
alone (never from the cells being predicted): only features without negative
input values are touched, so arcsinh cytometry or scaled data pass through.
"""

from __future__ import annotations

import numpy as np

from .._matrix import column_min, take_rows

#: Accepted values of ``nonnegative=``.
POLICIES = ("clip", "keep_zeros", "off")


def check_policy(nonnegative) -> str:
    """Return ``nonnegative`` if it is a known policy, else raise naming the choices."""
    if nonnegative not in POLICIES:
        raise ValueError(f"nonnegative must be one of {', '.join(map(repr, POLICIES))}, got "
                         f"{nonnegative!r}.")
    return nonnegative


def nonnegative_columns(X, nonnegative: str) -> np.ndarray | None:
    """Features the policy applies to: those whose input has no negative value.

    ``None`` with ``"off"``, so that nothing is read.
    """
    if check_policy(nonnegative) == "off":
        return None
    return column_min(X) >= 0


def enforce_nonnegative(values: np.ndarray, X, rows: np.ndarray, columns: np.ndarray | None,
                        nonnegative: str) -> np.ndarray:
    """Apply the policy to predicted ``values`` of input ``rows`` of ``X``, in place.

    ``"clip"``: values below zero become zero. ``"keep_zeros"``: also, an
    input zero stays zero, as a count that is zero stays zero under an
    intensity change (batch effects). It would erase genes that switch on
    under a perturbation, so it does not suit prediction. ``"off"``: as decoded.
    """
    if columns is None or nonnegative == "off" or not columns.any():
        return values
    cols = np.flatnonzero(columns)
    block = np.maximum(values[:, cols], 0)
    if nonnegative == "keep_zeros":
        block[take_rows(X, rows)[:, cols] == 0] = 0
    values[:, cols] = block
    return values


def nonnegative_policy(X, nonnegative: str):
    """The policy as one function ``finish(values, rows)`` (in place, returns ``values``),
    its features decided once from the input ``X``."""
    columns = nonnegative_columns(X, nonnegative)

    def finish(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return enforce_nonnegative(values, X, rows, columns, nonnegative)

    return finish
