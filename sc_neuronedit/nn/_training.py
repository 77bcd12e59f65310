from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .._matrix import dense, read_rows, take_rows
from ._autoencoder import Autoencoder
from ._distributed import all_reduce_sum, data_parallel, shard, world


@dataclass
class TrainingHistory:
    """Per-epoch losses of one training run: mean squared error per entry, in
    standardised units when the network standardises its input."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "train_loss": np.asarray(self.train_loss, dtype=np.float64),
            "validation_loss": np.asarray(self.validation_loss, dtype=np.float64),
            "best_epoch": int(self.best_epoch),
            "stopped_early": bool(self.stopped_early),
            "seconds": float(self.seconds),
        }

    @classmethod
    def from_dict(cls, d: dict) -> TrainingHistory:
        return cls(
            [float(v) for v in d.get("train_loss", [])],
            [float(v) for v in d.get("validation_loss", [])],
            int(d.get("best_epoch", -1)),
            bool(d.get("stopped_early", False)),
            float(d.get("seconds", 0.0)),
        )


#: Floor of the standard deviation that standardisation divides by.
MIN_SCALE = 0.1


def standardization(rows, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and floored standard deviation, streamed over row chunks."""
    n = rows.shape[0]
    mine = shard(np.arange(n))  # each rank sums its part; the sums are added up
    sums = torch.zeros((2, rows.shape[1]), dtype=torch.float64)
    for start in range(0, len(mine), chunk):
        block = torch.as_tensor(np.asarray(take_rows(rows, mine[start : start + chunk]), dtype=np.float64))
        sums[0] += block.sum(dim=0)
        sums[1] += (block**2).sum(dim=0)
    total, total_sq = all_reduce_sum(sums).numpy()
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 0.0))
    return (torch.as_tensor(mean, dtype=torch.float32),
            torch.as_tensor(np.maximum(std, MIN_SCALE), dtype=torch.float32))


def rows_to_tensor(X, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows ``idx`` of a dense, CSR or backed matrix as a dense float32 tensor.

    Only the requested rows are densified, so a sparse matrix is never
    expanded whole.
    """
    return block_tensor(read_rows(X, idx), device)


def block_tensor(block, device: torch.device) -> torch.Tensor:
    """An in-memory block (dense or sparse) as a dense float32 tensor on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(dense(block), dtype=np.float32)).to(device)


def epoch_batches(idx: np.ndarray, batch_size: int, rng: np.random.Generator, chunk_rows: int | None):
    """One epoch's minibatches of ``idx`` (row indices into the training matrix).

    ``chunk_rows=None``: a full random permutation. Otherwise the sorted ``idx``
    is cut into contiguous chunks of ``chunk_rows`` rows, visited in random
    order, each shuffled within: a chunk is one sequential read from disk, and
    minibatches never straddle two chunks. When all of ``idx`` fits in one chunk
    the batches are those of the full permutation, so small backed and in-memory
    data train alike. Yields ``(chunk, batch)``: ``chunk`` the sorted rows to read
    at once (``None`` for a full permutation), ``batch`` a subset of them.
    """
    if chunk_rows is None or len(idx) <= chunk_rows:
        order = idx[rng.permutation(len(idx))]
        chunk = None if chunk_rows is None else np.sort(idx)
        for start in range(0, len(order), batch_size):
            yield chunk, order[start : start + batch_size]
        return
    idx = np.sort(idx)
    starts = np.arange(0, len(idx), chunk_rows)
    for start in starts[rng.permutation(len(starts))]:
        chunk = idx[start : start + chunk_rows]
        order = chunk[rng.permutation(len(chunk))]
        for first in range(0, len(order), batch_size):
            yield chunk, order[first : first + batch_size]


def iter_batches(X, idx: np.ndarray, batch_size: int, device: torch.device):
    for start in range(0, len(idx), batch_size):
        yield rows_to_tensor(X, idx[start : start + batch_size], device)


def train_autoencoder(
    model: Autoencoder,
    X,
    *,
    max_epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    validation_fraction: float,
    patience: int | None,
    device: torch.device | str,
    random_state: int,
    progress: bool,
    chunk_rows: int | None = None,
    mixed_precision: bool = False,
) -> TrainingHistory:
    """Train ``model`` to reconstruct the rows of ``X`` (MSE, Adam).

    Defaults live in one place, :meth:`sc_neuronedit.NeuronEditor.train`.

    The learning rate follows a cosine schedule from ``lr`` down to
    ``lr / 100`` over ``max_epochs``: the late, small steps settle the
    reconstruction within a short budget of epochs. A random
    ``validation_fraction`` of rows is held out; training stops when its loss
    has not improved for ``patience`` epochs, and the weights of the best
    validation epoch are restored. With ``validation_fraction=0`` every row is
    used and the last epoch is kept.

    Rows are drawn in minibatches from a dense array, a CSR matrix or a backed
    dataset; only the minibatch is densified. With ``chunk_rows`` (for backed
    data), an epoch visits contiguous chunks of rows in random order and draws
    shuffled minibatches from each chunk once it is read, so the disk is read
    sequentially and only one chunk is in memory. With ``mixed_precision`` the
    passes run under bfloat16 autocast and the loss is summed in float32. In a ``torch.distributed`` run
    (see :mod:`._distributed`) each rank reads and computes its shard of every
    minibatch; the result is the single-process training up to float rounding.
    """
    import time
    import warnings

    with warnings.catch_warnings():
        # without ipywidgets, tqdm.auto warns in notebooks and falls back to text: fine
        warnings.simplefilter("ignore")
        from tqdm.auto import tqdm

    device = torch.device(device)
    n = X.shape[0]
    if n < 2:
        raise ValueError(f"Need at least 2 cells to train, got {n}.")
    rng = np.random.default_rng(random_state)
    perm = rng.permutation(n)
    n_val = int(round(validation_fraction * n)) if validation_fraction > 0 else 0
    if validation_fraction > 0:
        n_val = min(max(n_val, 1), n - 1)
    val_idx, train_idx = np.sort(perm[:n_val]), perm[n_val:]

    model.to(device)
    parallel = data_parallel(model)
    world_size = world()[1]
    # With ~7.5M weights and 128-cell batches the optimiser step is a third of the work:
    # the fused kernel (CPU and CUDA) does it in one pass; it is ~1.5x faster training.
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {"foreach": True}
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, **fused)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(max_epochs, 1), eta_min=lr / 100)
    history = TrainingHistory()
    best_loss, best_state, since_best = math.inf, None, 0
    start = time.perf_counter()
    bar = tqdm(range(max_epochs), desc="training", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        parallel.train()
        total = torch.zeros((), dtype=torch.float64, device=device)
        loaded, block = None, None
        for chunk, batch in epoch_batches(train_idx, batch_size, rng, chunk_rows):
            if chunk is None:
                xb = rows_to_tensor(X, shard(batch), device)
            else:
                if chunk is not loaded:  # one read per chunk, then batches from memory
                    loaded, block = chunk, X[chunk]
                xb = rows_to_tensor(block, np.searchsorted(chunk, shard(batch)), device)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=mixed_precision):
                recon = parallel(xb)
            squares = torch.sum(((recon.float() - xb) / model.scale) ** 2)
            # The mean over the whole minibatch; DDP averages the ranks' gradients,
            # so each rank's sum is scaled up by the number of ranks.
            (squares * (world_size / (len(batch) * xb.shape[1]))).backward()
            opt.step()
            total += squares.detach()
        sched.step()
        history.train_loss.append(all_reduce_sum(total).item() / (len(train_idx) * X.shape[1]))
        if n_val:
            val = _mean_loss(model, X, val_idx, batch_size, device)
            history.validation_loss.append(val)
            if val < best_loss - 1e-7:
                best_loss, since_best, history.best_epoch = val, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
            else:
                since_best += 1
            bar.set_postfix(train=f"{history.train_loss[-1]:.4f}", val=f"{val:.4f}")
            if patience is not None and since_best >= patience:
                history.stopped_early = True
                break
        else:
            history.best_epoch = epoch
            bar.set_postfix(train=f"{history.train_loss[-1]:.4f}")
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


@torch.no_grad()
def _mean_loss(model, X, idx, batch_size, device) -> float:
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    for xb in iter_batches(X, shard(idx), batch_size * 4, device):
        total += torch.sum(((model(xb) - xb) / model.scale) ** 2)
    return all_reduce_sum(total).item() / (len(idx) * X.shape[1])
