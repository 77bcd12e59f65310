"""Thread counts of torch and numba, left as the caller had them."""

from __future__ import annotations

from contextlib import contextmanager

import numba
import torch


@contextmanager
def restored_threads():
    """Leave numba's and torch's thread counts as they were found.

    :class:`CpuBlocks` sets numba's count, and numba's threading layer can reset
    the OpenMP count that torch reads: a library must not change either for its caller.
    """
    # torch's first: numba's first call starts its thread pool, which resets OpenMP's.
    torch_threads = torch.get_num_threads()
    numba_threads = numba.get_num_threads()
    try:
        yield
    finally:
        numba.set_num_threads(numba_threads)
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
