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
