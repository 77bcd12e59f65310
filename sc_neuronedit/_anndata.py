"""AnnData input handling: cell selections, feature masks, matrices, checks.

Everything that knows about ``.obs``, ``.var`` and ``.layers`` lives here, so
the model and the edit math can stay array-only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import sparse

from ._matrix import in_memory


def is_anndata(obj) -> bool:
    from anndata import AnnData

    return isinstance(obj, AnnData)


def _as_list(value) -> list:
    if isinstance(value, (list, tuple, set, np.ndarray, pd.Index)):
        return list(value)
    return [value]


def resolve_selection(adata, selection, *, name: str = "selection") -> np.ndarray:
    """A boolean mask over ``adata.obs`` from a mask or ``{obs_key: value(s)}``.

    Several keys combine with AND; a list of values for one key with OR.
    Raises ``KeyError`` / ``ValueError`` naming what exists when a key or
    value is unknown, and when nothing is selected.
    """
    n = adata.n_obs
    if isinstance(selection, Mapping):
        if not selection:
            raise ValueError(f"{name} is an empty dict; give e.g. {{'condition': 'control'}}.")
        mask = np.ones(n, dtype=bool)
        for key, value in selection.items():
            if key not in adata.obs.columns:
                raise KeyError(
                    f"{name}: {key!r} is not a column of adata.obs; "
                    f"available: {', '.join(map(str, adata.obs.columns))}."
                )
            col = adata.obs[key]
            values = _as_list(value)
            present = set(col.unique().tolist())
            missing = [v for v in values if v not in present]
            if missing:
                shown = sorted(map(str, present))[:20]
                raise ValueError(
                    f"{name}: value(s) {missing!r} not found in adata.obs[{key!r}]; "
                    f"available: {', '.join(shown)}."
                )
            mask &= col.isin(values).to_numpy()
    else:
        arr = np.asarray(selection)
        if arr.dtype == bool:
            if arr.shape != (n,):
                raise ValueError(
                    f"{name}: boolean mask has shape {arr.shape}, expected ({n},) (one per cell)."
                )
            mask = arr.copy()
        elif arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
            if arr.size and (arr.min() < -n or arr.max() >= n):
                raise IndexError(f"{name}: integer index out of range for {n} cells.")
            mask = np.zeros(n, dtype=bool)
            mask[arr] = True
        else:
            raise TypeError(
                f"{name} must be a boolean mask over cells, integer indices, or a dict "
                f"{{obs_key: value(s)}}; got {type(selection).__name__}."
            )
    if not mask.any():
        raise ValueError(f"{name} selects no cells.")
    return mask


def resolve_mask_var(adata, mask_var, *, name: str = "mask_var") -> np.ndarray | None:
    """Boolean mask over ``adata.var`` from ``None``, a ``.var`` column name,
    a boolean array or a list of var names (``None`` means all features);
    ``name`` is the argument's name in error messages."""
    if mask_var is None:
        return None
    if isinstance(mask_var, str):
        if mask_var not in adata.var.columns:
            raise KeyError(
                f"{name}={mask_var!r} is not a column of adata.var; "
                f"available: {', '.join(map(str, adata.var.columns)) or '(none)'}."
                + (" Make a boolean column first, e.g. sc.pp.highly_variable_genes(adata, "
                   "n_top_genes=2000) adds adata.var['highly_variable'], or pass a boolean mask "
                   "or a list of var names." if name == "mask_var" else "")
            )
        mask = adata.var[mask_var].to_numpy()
        if mask.dtype != bool:
            raise TypeError(f"adata.var[{mask_var!r}] must be boolean, got {mask.dtype}.")
    else:
        arr = np.asarray(mask_var)
        if arr.dtype == bool:
            if arr.shape != (adata.n_vars,):
                raise ValueError(
                    f"{name} has shape {arr.shape}, expected ({adata.n_vars},) (one per feature)."
                )
            mask = arr
        else:
            idx = adata.var_names.get_indexer(arr.astype(str))
            if (idx < 0).any():
                missing = arr[idx < 0][:10].tolist()
                raise KeyError(f"{name}: names not in adata.var_names: {missing}.")
            mask = np.zeros(adata.n_vars, dtype=bool)
            mask[idx] = True
    if not mask.any():
        raise ValueError(f"{name} selects no features.")
    return np.asarray(mask, dtype=bool)


def get_matrix(adata, layer: str | None):
    """``adata.X`` or ``adata.layers[layer]``, without copying."""
    if layer is None:
        if adata.X is None:
            raise ValueError("adata.X is empty; pass layer= to use a layer.")
        return adata.X
    if layer not in adata.layers:
        raise KeyError(
            f"Layer {layer!r} not found; available layers: "
            f"{', '.join(adata.layers.keys()) or '(none)'}."
        )
    return adata.layers[layer]


def check_finite(X, *, what: str = "the input matrix", chunk: int = 4096,
                 obs_names=None, var_names=None) -> None:
    """Raise if ``X`` (dense, sparse or backed) holds NaN or inf, read in row chunks.

    The message counts the NaN and inf entries and names the first cells and
    features holding them (by name when ``obs_names`` / ``var_names`` are given).
    """
    n_nan = n_inf = 0
    rows, cols = [], set()
    for start in range(0, X.shape[0], chunk):
        block = in_memory(X[start : start + chunk])
        data = block.data if sparse.issparse(block) else np.asarray(block)
        if np.isfinite(data).all():
            continue
        n_nan += int(np.isnan(data).sum())
        n_inf += int(np.isinf(data).sum())
        bad = ~np.isfinite(block.toarray() if sparse.issparse(block) else data)
        rows.extend((start + np.flatnonzero(bad.any(axis=1))).tolist())
        cols.update(np.flatnonzero(bad.any(axis=0)).tolist())
    if rows:
        cols = sorted(cols)

        def first(idx, names):
            shown = [str(names[i]) if names is not None else str(i) for i in idx[:5]]
            return ", ".join(shown) + (", …" if len(idx) > 5 else "")

        raise ValueError(
            f"{what} contains NaN or inf ({n_nan} NaN, {n_inf} inf) in {len(rows)} cell(s) "
            f"(rows: {first(rows, obs_names)}) and {len(cols)} feature(s) "
            f"({first(cols, var_names)}). Remove those cells or features, or impute the values, "
            "before training."
        )


def group_weights(groups: np.ndarray) -> np.ndarray:
    """``1 / group size`` per cell, so that every group weighs the same."""
    _, inverse, counts = np.unique(np.asarray(groups).astype(str), return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def resolve_groups(adata, groupby, *, name: str = "groupby") -> np.ndarray:
    """Labels per cell from an ``.obs`` column name or an array; ``name`` is the
    argument the caller's user passed, for the error message."""
    if isinstance(groupby, str):
        if groupby not in adata.obs.columns:
            raise KeyError(
                f"{name}={groupby!r} is not a column of adata.obs; "
                f"available: {', '.join(map(str, adata.obs.columns))}."
            )
        return adata.obs[groupby].to_numpy()
    arr = np.asarray(groupby)
    if arr.shape != (adata.n_obs,):
        raise ValueError(f"{name} array has shape {arr.shape}, expected ({adata.n_obs},).")
    return arr


def resolve_populations(adata, population_key: str | None) -> np.ndarray | None:
    """Population label per cell (strings) from an ``.obs`` column, or ``None``.

    Every cell needs a label: a missing one is an error, not a silent population.
    """
    if population_key is None:
        return None
    labels = pd.Series(resolve_groups(adata, population_key, name="population_key"))
    if labels.isna().any():
        raise ValueError(f"adata.obs[{population_key!r}] has {int(labels.isna().sum())} cells "
                         "without a population; give every cell one (e.g. with "
                         "sc_neuronedit.pp.populations, which assigns every cell).")
    return labels.astype(str).to_numpy()
