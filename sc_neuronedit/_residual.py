"""The residual edit conditioned on the expression level.

Array math, no AnnData and no autoencoder (the fit's per-bin quantiles run in one compiled
pass per feature, ``_kernels.level_quantiles``). ``decode="edited_residual"``
adds to the decoded edit ``decode(z')`` an edited copy of the cell's
reconstruction residual ``r = x - decode(z)``. Pooled over all cells, one
quantile map per feature cannot give a gene that switches on heterogeneously
(zeros in control cells, a mix of zeros and high values in treated ones) its
spread: almost every control cell sits at the same low level and gets the same
small residual. Conditioning on the level fixes that. Per feature, source cells
are split into ``n_bins`` quantile bins of their decoded value ``decode(z)``
and target cells into bins of theirs; each bin has its own residual quantiles.
A cell's residual takes its quantile among the source residuals of its own
level's bin and becomes the same quantile of the target residuals in the bin of
its predicted level ``decode(z')``. Outside a source bin's range the end shift
is held constant, as in :class:`~sc_neuronedit.QuantileEdit`. One bin is the
pooled residual edit.

A feature where any bin holds fewer than :data:`MIN_BIN_CELLS` cells (Kish's
effective number, so that a few heavily weighted cells do not count as many)
uses the pooled edit in every bin: its quantiles would come from a handful of
cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import _kernels
from ._edit import QuantileEdit, fit_quantile_edit
from ._threads import restored_threads

__all__ = ["MIN_BIN_CELLS", "LevelResidualEdit", "fit_level_residual_edit"]

#: Fewest effective cells (Kish: ``(sum w)^2 / sum w^2``) a level bin may hold on
#: either side; a feature with a smaller bin falls back to the pooled residual edit.
MIN_BIN_CELLS = 20


@dataclass
class LevelResidualEdit:
    """A per-feature residual edit with ``K`` level bins on each side.

    Feature ``j`` of a cell with decoded value ``d``, residual ``r`` and
    decoded edit ``e`` has source bin ``s`` = the number of
    ``source_edges[:, j]`` at or below ``d`` and target bin ``t`` = the number of
    ``target_edges[:, j]`` at or below ``e``. Its residual becomes
    ``np.interp(r, source_knots[s, :, j], target_knots[t, :, j])`` inside the
    source bin's range; outside it, ``r`` shifted by the end knots' difference.

    Usually learned with :func:`fit_level_residual_edit`.

    Parameters
    ----------
    source_edges, target_edges
        ``(K - 1, n_features)`` bin edges of the decoded values, nondecreasing per column.
    source_knots, target_knots
        ``(K, n_quantiles, n_features)`` residual quantiles per bin.
    pooled
        ``(n_features,)`` boolean: features that fell back to the pooled edit
        (their bins all hold the same knots).
    """

    source_edges: torch.Tensor
    target_edges: torch.Tensor
    source_knots: torch.Tensor
    target_knots: torch.Tensor
    pooled: torch.Tensor

    def __post_init__(self):
        k, q, d = self.source_knots.shape
        if self.target_knots.shape != (k, q, d) or q < 2:
            raise ValueError(f"source_knots {tuple(self.source_knots.shape)} and target_knots "
                             f"{tuple(self.target_knots.shape)} must both be (n_bins, n_quantiles >= 2, "
                             "n_features).")
        for name in ("source_edges", "target_edges"):
            if getattr(self, name).shape != (k - 1, d):
                raise ValueError(f"{name} must be ({k - 1}, {d}), got {tuple(getattr(self, name).shape)}.")
        if self.pooled.shape != (d,):
            raise ValueError(f"pooled must be ({d},), got {tuple(self.pooled.shape)}.")

    @classmethod
    def from_pooled(cls, edit: QuantileEdit) -> LevelResidualEdit:
        """The one-bin form of a pooled per-feature :class:`~sc_neuronedit.QuantileEdit`."""
        empty = edit.source_knots.new_empty((0, edit.n_neurons))
        return cls(empty, empty.clone(), edit.source_knots[None], edit.target_knots[None],
                   torch.ones(edit.n_neurons, dtype=torch.bool, device=edit.source_knots.device))

    @property
    def n_bins(self) -> int:
        """Level bins per side, ``K``."""
        return self.source_knots.shape[0]

    @property
    def n_features(self) -> int:
        """Number of features."""
        return self.source_knots.shape[2]

    def pooled_edit(self) -> QuantileEdit:
        """The edit of a one-bin model as a :class:`~sc_neuronedit.QuantileEdit`."""
        if self.n_bins != 1:
            raise ValueError(f"This edit has {self.n_bins} level bins, not one.")
        return QuantileEdit(self.source_knots[0], self.target_knots[0])

    def to(self, device: torch.device | str) -> LevelResidualEdit:
        """A copy with every tensor on ``device``."""
        return LevelResidualEdit(*(getattr(self, f).to(device) for f in (
            "source_edges", "target_edges", "source_knots", "target_knots", "pooled")))

    def shift(self, residuals: torch.Tensor, decoded: torch.Tensor, edited: torch.Tensor) -> torch.Tensor:
        """The change of each residual.

        Parameters
        ----------
        residuals
            ``(n, n_features)`` residuals ``x - decode(z)``.
        decoded
            ``(n, n_features)`` decoded values ``decode(z)``: pick the source bins.
        edited
            ``(n, n_features)`` decoded edits ``decode(z')``: pick the target bins.

        Returns
        -------
        ``(n, n_features)`` tensor to add to ``residuals``. With one bin this
        is exactly :meth:`QuantileEdit.shift <sc_neuronedit.QuantileEdit.shift>`
        of the pooled edit.
        """
        for name, t in (("residuals", residuals), ("decoded", decoded), ("edited", edited)):
            if t.ndim != 2 or t.shape[1] != self.n_features or t.shape[0] != residuals.shape[0]:
                raise ValueError(f"{name} must be (n, {self.n_features}) like residuals, got "
                                 f"{tuple(t.shape)}.")
        edit = self.to(residuals.device)
        if self.n_bins == 1:
            return edit.pooled_edit().shift(residuals)
        k, q, d = edit.source_knots.shape
        dtype = residuals.dtype
        src = edit.source_knots.to(dtype)
        tgt = edit.target_knots.to(dtype)
        r_t = residuals.T.contiguous()  # (d, n): searchsorted wants rows of sorted knots
        s_bin = _bins(edit.source_edges.to(dtype), decoded)
        t_bin = _bins(edit.target_edges.to(dtype), edited)
        # Knots at or below r in the cell's own source bin (0 .. q), one search per bin.
        above = torch.zeros_like(s_bin)
        for b in range(k):
            found = torch.searchsorted(src[b].T.contiguous(), r_t, right=True)
            above = torch.where(s_bin == b, found, above)
        lo, hi = (above - 1).clamp(0, q - 1), above.clamp(max=q - 1)

        def knot(table, bins, i):  # table (k, q, d) -> the (d, n) knots at [bins, i]
            flat = table.permute(2, 0, 1).reshape(d, k * q)
            return torch.gather(flat, 1, bins * q + i)

        s_lo, s_hi = knot(src, s_bin, lo), knot(src, s_bin, hi)
        t_lo, t_hi = knot(tgt, t_bin, lo), knot(tgt, t_bin, hi)
        width = s_hi - s_lo
        frac = ((r_t - s_lo) / torch.where(width > 0, width, torch.ones_like(width))).clamp(0.0, 1.0)
        inside = t_lo + frac * (t_hi - t_lo) - r_t
        # Below the first knot lo == hi == 0, above the last lo == hi == q - 1: a constant shift.
        outside = t_lo - s_lo
        return torch.where((above > 0) & (above < q), inside, outside).T


def _bins(edges: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``(d, n)`` bin of each value: the number of its feature's edges at or below it."""
    return torch.searchsorted(edges.T.contiguous(), values.T.contiguous(), right=True)


def fit_level_residual_edit(
    source_residuals: torch.Tensor,
    source_decoded: torch.Tensor,
    target_residuals: torch.Tensor,
    target_decoded: torch.Tensor,
    *,
    n_bins: int,
    n_quantiles: int = 100,
    source_weights: torch.Tensor | None = None,
    target_weights: torch.Tensor | None = None,
    min_cells: float = MIN_BIN_CELLS,
) -> LevelResidualEdit:
    """Learn a :class:`LevelResidualEdit` from source and target cells.

    Parameters
    ----------
    source_residuals, source_decoded
        ``(n_source, d)`` residuals ``x - decode(z)`` and decoded values
        ``decode(z)`` of the source cells.
    target_residuals, target_decoded
        The same for the target cells.
    n_bins
        Level bins per side, each holding an equal share of that side's
        (weighted) cells per feature. ``1`` is the pooled residual edit,
        exactly :func:`~sc_neuronedit.fit_quantile_edit` of the residuals.
    n_quantiles
        Residual knots per bin.
    source_weights, target_weights
        Optional per-cell weights (e.g. ``1 / group size``), for the bin edges
        and the quantiles alike.
    min_cells
        A feature whose smallest bin, on either side, holds fewer effective
        cells than this uses the pooled edit in every bin.

    Returns
    -------
    :class:`LevelResidualEdit`.
    """
    if not (isinstance(n_bins, int) and n_bins >= 1):
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
    for name, res, dec in (("source", source_residuals, source_decoded),
                           ("target", target_residuals, target_decoded)):
        if dec.shape != res.shape:
            raise ValueError(f"{name} decoded values {tuple(dec.shape)} and residuals "
                             f"{tuple(res.shape)} must have the same shape.")
        if not torch.isfinite(dec).all():
            raise ValueError(f"The {name} decoded values contain NaN or inf.")

    def pooled(cols=slice(None)):
        return fit_quantile_edit(source_residuals[:, cols], target_residuals[:, cols],
                                 n_quantiles=n_quantiles, source_weights=source_weights,
                                 target_weights=target_weights)

    if n_bins == 1:
        return LevelResidualEdit.from_pooled(pooled())
    for name, res in (("source", source_residuals), ("target", target_residuals)):
        if not torch.isfinite(res).all():
            raise ValueError(f"The {name} residuals contain NaN or inf.")
    probs = np.linspace(0.0, 1.0, n_quantiles)
    sides = []
    with restored_threads():  # the compiled pass runs on torch's thread count
        _kernels.threads(torch.get_num_threads())
        for res, dec, w in ((source_residuals, source_decoded, source_weights),
                            (target_residuals, target_decoded, target_weights)):
            w = np.ones(len(res)) if w is None else w.to(torch.float64).cpu().numpy()
            sides.append([torch.from_numpy(a) for a in _kernels.level_quantiles(
                res.detach().cpu().numpy(), dec.detach().cpu().numpy(), w, n_bins, probs)])
    (s_edges, s_knots, s_ess), (t_edges, t_knots, t_ess) = sides
    # An empty bin (ess 0) has no knots: it falls back whatever min_cells is.
    small = ((s_ess < min_cells) | (s_ess <= 0)).any(dim=0) | ((t_ess < min_cells) | (t_ess <= 0)).any(dim=0)
    if small.any():  # the pooled edit of those features only: it costs a sort of its own
        fallback = pooled(small.to(source_residuals.device))
        s_knots[:, :, small] = fallback.source_knots.cpu().double()
        t_knots[:, :, small] = fallback.target_knots.cpu().double()
    dtype, device = source_residuals.dtype, source_residuals.device
    return LevelResidualEdit(
        s_edges.to(device, dtype), t_edges.to(device, dtype), s_knots.to(device, dtype),
        t_knots.to(device, dtype), small.to(device))
