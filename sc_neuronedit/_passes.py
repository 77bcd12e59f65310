"""The network's passes over rows of data: encoding, and the reconstruction residual.

Array engine: rows come as a :class:`~sc_neuronedit._matrix.Rows` (a lazy view and
indices), the network as an argument; nothing here knows of AnnData or the model.
"""

from __future__ import annotations

import numpy as np
import torch

from ._matrix import Rows
from .nn._distributed import gather_rows, shard
from .nn._training import iter_batches

#: Cells per forward pass; only memory use depends on it.
BATCH_SIZE = 1024


def encode_rows(net, layer, cells: Rows, device, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """Activations of ``layer`` for ``cells``, on ``device``."""
    with torch.no_grad():
        out = [net.encode(xb, layer)
               for xb in iter_batches(cells.view, shard(cells.idx), batch_size, device)]
        local = torch.cat(out) if out else torch.empty(0, net.layer_width(layer), device=device)
        return gather_rows(local)  # every rank's cells: exact quantiles in a distributed run


def residual_rows(net, layer, cells: Rows, codes: torch.Tensor, positions: np.ndarray, device,
                  batch_size: int = BATCH_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Residuals ``x - decode(z)`` and decoded values ``decode(z)`` of the cells at
    ``positions``, decoded from their activations ``codes`` (no second encoding)."""
    with torch.no_grad():
        mine = shard(positions)  # ranks share the work; every rank gets every row back
        res, dec = [], []
        for start, xb in zip(range(0, len(mine), batch_size),
                             iter_batches(cells.view, cells.idx[mine], batch_size, device)):
            dec.append(net.decode(codes[mine[start:start + batch_size]].to(device), layer))
            res.append(xb - dec[-1])
        empty = torch.empty(0, net.n_input, device=device)
        return tuple(gather_rows(torch.cat(t) if t else empty).cpu() for t in (res, dec))
