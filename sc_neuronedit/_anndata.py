"""The data edge: AnnData (or an array) in, rows and labels out.

Everything that knows about ``.obs``, ``.var`` and ``.layers`` lives here, so
the model and the edit math can stay array-only. :class:`Data` binds a model to
its matrix; a selection becomes a :class:`~sc_neuronedit._matrix.Rows` (a lazy
column view plus row indices, nothing read) and labels become arrays, once per
call, and everything below receives those.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from scipy import sparse

from ._matrix import Columns, Rows, array_mask, as_matrix


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
            mask = index_mask(arr, n, name=name, unit="cells")
        else:
            raise TypeError(
                f"{name} must be a boolean mask over cells, integer indices, or a dict "
                f"{{obs_key: value(s)}}; got {type(selection).__name__}."
            )
    if not mask.any():
        raise ValueError(f"{name} selects no cells.")
    return mask


def index_mask(idx: np.ndarray, n: int, *, name: str, unit: str = "rows") -> np.ndarray:
    """A boolean mask over ``n`` rows from integer indices: rows in order, each once."""
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"{name}: integer index out of range for {n} {unit}.")
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
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


class Data:
    """The matrix a model is bound to, and the one place its cells are resolved.

    Parameters
    ----------
    data
        AnnData (dense, CSR or backed ``X``/layer) or a cells x features array.
    layer
        Layer of ``data`` to model instead of ``.X`` (AnnData only).
    mask_var
        The features the model sees (see :class:`~sc_neuronedit.NeuronEditor`).
    order
        Var names in the model's feature order (a saved model's): the columns are
        then taken in that order, whatever the data's.
    """

    def __init__(self, data, *, layer: str | None = None, mask_var=None, order=None):
        self.adata = data if is_anndata(data) else None
        if self.adata is not None:
            X = get_matrix(data, layer)
            self.feature_mask = resolve_mask_var(data, mask_var)
            names = np.asarray(data.var_names)
            self.feature_names = names if self.feature_mask is None else names[self.feature_mask]
        else:
            if layer is not None:
                raise ValueError("layer= only applies to AnnData input.")
            X = as_matrix(data)
            self.feature_mask = None if mask_var is None else array_mask(mask_var, X.shape[1])
            self.feature_names = None
        self.layer, self.X = layer, X
        self.n_features = X.shape[1] if self.feature_mask is None else int(self.feature_mask.sum())
        #: The data's columns in the model's feature order (``None``: all, in order).
        self.columns = None if self.feature_mask is None else np.flatnonzero(self.feature_mask)
        if order is not None:
            self.columns = self.adata.var_names.get_indexer(order)
            self.feature_names = np.asarray(order, dtype=object)

    @property
    def n_obs(self) -> int:
        return self.X.shape[0]

    def view(self, X=None) -> Columns:
        """The model's columns of ``X`` (default the bound matrix)."""
        return Columns(self.X if X is None else X, self.columns)

    def owns(self, cells: Rows) -> bool:
        """Whether ``cells`` are rows of the bound matrix (not a matrix given instead)."""
        return cells.view.X is self.X

    def cells(self, cells, *, name: str = "cells") -> Rows:
        """Rows for a selection, a mask, integer indices or a data matrix (``None``: all)."""
        if cells is None:
            return Rows(self.view(), np.arange(self.n_obs))
        if isinstance(cells, torch.Tensor):
            cells = cells.detach().cpu().numpy()
        if sparse.issparse(cells) or (isinstance(cells, np.ndarray) and cells.ndim == 2):
            width = cells.shape[1]
            if width == self.n_features:
                view = Columns(cells, None)
            elif self.feature_mask is not None and width == len(self.feature_mask):
                view = self.view(cells)
            else:
                raise ValueError(
                    f"{name}: a data matrix must have {self.n_features} columns (the model's "
                    f"features), got {width}."
                )
            return Rows(view, np.arange(cells.shape[0]))
        if self.adata is None:
            mask, n = np.asarray(cells), self.n_obs
            if mask.ndim == 1 and np.issubdtype(mask.dtype, np.integer):
                mask = index_mask(mask, n, name=name)  # as with AnnData
            if mask.dtype != bool or mask.shape != (n,):
                raise TypeError(
                    f"{name}: without AnnData, give a boolean mask over the {n} rows, "
                    "integer row indices or a cells x features matrix."
                )
        else:
            mask = resolve_selection(self.adata, cells, name=name)
        return Rows(self.view(), np.flatnonzero(mask))

    def row_labels(self, labels, *, name: str) -> np.ndarray:
        """Labels over the bound rows, from an ``.obs`` column name or an array."""
        if isinstance(labels, str):
            if self.adata is None:
                raise ValueError(f"{name}={labels!r} names an .obs column, which needs AnnData "
                                 "input; give an array of labels instead.")
            return resolve_groups(self.adata, labels, name=name)
        labels = np.asarray(labels)
        if labels.shape != (self.n_obs,):
            raise ValueError(f"{name} must have one label per row of the data "
                             f"({self.n_obs}), got shape {labels.shape}.")
        return labels

    def side_labels(self, labels, *sides: Rows) -> list[np.ndarray]:
        """Population labels of each side's cells: indexed from labels over the bound rows,
        or given per side (a tuple with one array per side)."""
        if isinstance(labels, tuple):
            if len(labels) != len(sides):
                raise ValueError(f"populations as a tuple needs one array per side ({len(sides)}).")
            out = [np.asarray(lab) for lab in labels]
            for lab, side in zip(out, sides):
                if lab.shape != (len(side.idx),):
                    raise ValueError(f"populations: {lab.shape[0] if lab.ndim else 0} labels for "
                                     f"{len(side.idx)} cells.")
            return [lab.astype(str) for lab in out]
        if not all(self.owns(side) for side in sides):
            raise ValueError("With cells given as matrices, give populations per side: "
                             "a tuple (source_labels, target_labels) or the cells' own labels.")
        labels = self.row_labels(labels, name="populations").astype(str)
        return [labels[side.idx] for side in sides]

    def cell_labels(self, labels, cells: Rows) -> np.ndarray:
        """Population labels (strings) of the cells to edit, as ``apply_edit`` takes them."""
        if isinstance(labels, str) or self.owns(cells):
            return np.asarray(self.row_labels(labels, name="populations")[cells.idx]).astype(str)
        (out,) = self.side_labels((labels,), cells)
        return out
