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
