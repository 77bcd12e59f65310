"""Row access to dense, sparse (CSR) and backed matrices, one block at a time."""

from __future__ import annotations

import numpy as np
from scipy import sparse


def in_memory(block):
    """A row block as an in-memory NumPy array or SciPy sparse matrix.

    Backed AnnData sparse datasets hand out lazy blocks; everything else passes.
    """
    return block.to_memory() if hasattr(block, "to_memory") else block


def is_backed(X) -> bool:
    """Whether ``X`` is read from disk (a backed AnnData's dense or sparse dataset)."""
    return not (isinstance(X, np.ndarray) or sparse.issparse(X))


def contiguous(idx):
    """``idx`` as a slice when it is a run of consecutive rows: one sequential read
    from a backed file instead of a fancy index."""
    if isinstance(idx, slice):
        return idx
    idx = np.asarray(idx)
    if idx.ndim == 1 and len(idx) > 1 and idx[-1] - idx[0] == len(idx) - 1 and (np.diff(idx) == 1).all():
        return slice(int(idx[0]), int(idx[-1]) + 1)
    return idx


def dense(block) -> np.ndarray:
    """An in-memory block as a dense NumPy array (sparse ones are densified)."""
    return block.toarray() if sparse.issparse(block) else np.asarray(block)


def take_rows(X, idx) -> np.ndarray:
    """Rows ``idx`` of ``X`` as a dense array; only those rows are densified."""
    return dense(in_memory(X[contiguous(idx)]))


def read_rows(X, idx):
    """Rows ``idx`` of ``X`` in memory (sparse stays sparse), in one read. A backed file
    needs increasing indices, so others are read in order and put back as asked."""
    idx = np.asarray(idx)
    if len(idx) > 1 and np.any(np.diff(idx) < 0):
        order = np.argsort(idx, kind="stable")
        return in_memory(X[contiguous(idx[order])])[np.argsort(order, kind="stable")]
    return in_memory(X[contiguous(idx)])


def column_min(X, chunk: int = 4096) -> np.ndarray:
    """Per-column minimum of a dense, sparse or backed matrix, read in row chunks."""
    n = X.shape[0]
    return np.min([take_rows(X, np.arange(s, min(s + chunk, n))).min(axis=0)
                   for s in range(0, n, chunk)], axis=0)


class Columns:
    """Row access to a subset of columns of a dense, sparse or backed matrix.

    ``cols`` is a boolean mask or integer indices in the model's feature order.
    Slicing rows first keeps a sparse or backed matrix from being expanded.
    """

    def __init__(self, X, cols: np.ndarray | None):
        if cols is not None and cols.dtype == bool:
            cols = np.flatnonzero(cols)
        self.X, self.cols = X, cols
        n_cols = X.shape[1] if cols is None else len(cols)
        self.shape = (X.shape[0], n_cols)

    def __getitem__(self, idx):
        block = in_memory(self.X[contiguous(idx)])
        return block if self.cols is None else block[:, self.cols]


class Rows:
    """A fixed subset of rows of a view, indexable like a matrix."""

    def __init__(self, view: Columns, idx: np.ndarray):
        self.view, self.idx = view, idx
        self.shape = (len(idx), view.shape[1])

    def __getitem__(self, i):
        return self.view[self.idx[i]]


def as_matrix(data):
    """A cells x features NumPy array or CSR matrix from array-like input (torch included)."""
    if hasattr(data, "detach"):  # a torch tensor
        data = data.detach().cpu().numpy()
    if sparse.issparse(data):
        return sparse.csr_matrix(data)
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError(f"Expected a cells x features matrix, got shape {arr.shape}.")
    return arr


def array_mask(mask_var, n_features: int) -> np.ndarray:
    """``mask_var`` for array input: a boolean mask with one entry per column."""
    mask = np.asarray(mask_var)
    if mask.dtype != bool or mask.shape != (n_features,):
        raise ValueError(f"With array input, mask_var must be a boolean mask of {n_features} entries "
                         f"(one per column), got {mask.dtype} of shape {mask.shape}; var names "
                         "and .var columns need AnnData input.")
    if not mask.any():
        raise ValueError("mask_var selects no features.")
    return mask


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
