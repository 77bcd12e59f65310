"""Writing an edit's results into an AnnData, shared by every ``tl`` function."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import sparse

from .._warn import warn

#: Above this share of edited activations outside the source range, warn.
OUTSIDE_WARN = 0.1


def to_uns(value):
    """Make ``value`` storable in ``.uns`` and identical after an ``.h5ad`` round trip."""
    if isinstance(value, Mapping):
        return {str(k): to_uns(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        arr = np.asarray(value)
        return arr.astype(str) if arr.dtype.kind in "OU" else arr
    if isinstance(value, np.ndarray):
        return value.astype(str) if value.dtype.kind in "OU" else value
    if isinstance(value, (np.generic,)):
        return value.item()
    return value


def warn_outside(fraction: float, where: str) -> None:
    """Warn, at the user's line, when a large share of edited activations lies outside the
    source range."""
    if fraction > OUTSIDE_WARN:
        warn(f"{fraction:.0%} of the edited activations of {where} lie outside the range of "
             "the source cells, where the edit extrapolates with a constant shift. The "
             "population may be too unlike the source for a reliable prediction.")


def merged_layer(X, rows: np.ndarray, values: np.ndarray):
    """``X`` with ``rows`` replaced by ``values``; sparse stays sparse."""
    if sparse.issparse(X):
        X = sparse.csr_matrix(X)
        n = X.shape[0]
        keep = np.ones(n, dtype=np.float32)
        keep[rows] = 0
        place = sparse.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, np.arange(len(rows)))),
            shape=(n, len(rows)),
        )
        out = sparse.diags(keep) @ X + place @ sparse.csr_matrix(values)
        out = sparse.csr_matrix(out, dtype=np.float32)
        out.eliminate_zeros()
        return out
    out = np.array(X, dtype=np.float32, copy=True)
    out[rows] = values
    return out


def write_result(adata, *, key_added: str, X_in, rows: np.ndarray, values: np.ndarray,
                 uns: dict, inplace: bool, obs_update: dict | None = None, start=None):
    """Store predictions in ``adata`` or return them as a new AnnData.

    inplace: ``layers[key_added]`` (other rows keep ``X_in``),
    ``obs[f"{key_added}_edited"]`` and ``uns[key_added]``. Otherwise a new
    AnnData of the edited cells with the predictions in ``.X``.
    """
    from anndata import AnnData
    from scanpy import logging as logg

    uns = to_uns(uns)
    if inplace:
        adata.layers[key_added] = merged_layer(X_in, rows, values)
        edited = np.zeros(adata.n_obs, dtype=bool)
        edited[rows] = True
        adata.obs[f"{key_added}_edited"] = edited
        adata.uns[key_added] = uns
        logg.info("    finished", time=start, deep=(
            f"added\n    .layers[{key_added!r}], predicted values\n"
            f"    .obs['{key_added}_edited'], the edited cells\n"
            f"    .uns[{key_added!r}], parameters, history and edit statistics"))
        return None
    obs = adata.obs.iloc[rows].copy()
    # Predicted cells must not share names with the observed cells they came from.
    obs.index = obs.index.astype(str) + "-predicted"
    for col, value in (obs_update or {}).items():
        obs[col] = value
        obs[col] = obs[col].astype("category")
    out = AnnData(X=values, obs=obs, var=adata.var.copy())
    out.uns[key_added] = uns
    logg.info("    finished", time=start, deep=f"returned {out.n_obs} predicted cells")
    return out
