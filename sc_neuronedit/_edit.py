"""The neuron edit: per-neuron piecewise-linear quantile shifts.

Pure tensor math, no AnnData and no autoencoder. Every function works on
``(n_cells, n_neurons)`` tensors, vectorised over neurons, on any device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["QuantileEdit", "fit_quantile_edit", "weighted_quantiles"]


def weighted_quantiles(
    values: torch.Tensor, probs: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Column-wise quantiles of ``values`` at ``probs``, optionally weighted.

    Each sample sits at the midpoint of its cumulative weight, ``(cumsum(w) - w/2)
    / sum(w)``, and quantiles interpolate linearly between samples; ``probs``
    below the first or above the last midpoint give the minimum or maximum. With
    equal weights this is the Hazen (type 5) estimator. Weights let groups of
    unequal size contribute equally (see :func:`fit_quantile_edit`).

    Parameters
    ----------
    values
        ``(n, d)`` samples.
    probs
        ``(q,)`` probabilities in ``[0, 1]``.
    weights
        ``(n,)`` non-negative weights; ``None`` means equal weights.

    Returns
    -------
    ``(q, d)`` tensor of quantiles.
    """
    n, d = values.shape
    if n == 0:
        raise ValueError("Cannot compute quantiles of an empty set of cells.")
    if weights is None:
        weights = torch.ones(n, dtype=values.dtype, device=values.device)
    weights = weights.to(device=values.device, dtype=values.dtype)
    if weights.shape != (n,) or not torch.isfinite(weights).all() or (weights < 0).any() \
            or not weights.sum() > 0:
        raise ValueError(
            f"weights must be {n} finite, non-negative values with a positive sum "
            f"(one per cell), got shape {tuple(weights.shape)}."
        )
    # Tied values are ordered by weight (a stable sort by value after one by weight),
    # so the quantiles do not depend on the order of the cells.
    by_weight = torch.sort(weights, stable=True).indices
    sorted_vals, order = torch.sort(values[by_weight], dim=0, stable=True)
    order = by_weight[order]
    w = weights[order]  # (n, d): each column's weights in sorted order
    cum = torch.cumsum(w, dim=0)
    total = cum[-1:]
    pos = (cum - 0.5 * w) / total  # (n, d), nondecreasing per column
    p = probs.to(device=values.device, dtype=values.dtype)
    p = p.unsqueeze(1).expand(-1, d).contiguous()  # (q, d)
    return _interp_columns(p, pos, sorted_vals)


def _interp_columns(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``np.interp`` applied independently to each column.

    ``x`` is ``(m, d)``; ``xp`` and ``fp`` are ``(k, d)`` with ``xp`` sorted per
    column. Outside ``xp``'s range the end values of ``fp`` are held. Tied
    ``xp`` knots never divide by zero: the interval between tied knots has no
    width, and the value on the right of the tie is used (on the left below
    the first knot, so that ``fp[0]`` is held there even when it is tied).
    """
    k = xp.shape[0]
    if k == 1:  # a single knot (one sample): a constant
        return fp.expand(x.shape[0], -1).clone()
    xp_t = xp.T.contiguous()  # (d, k): searchsorted wants rows of sorted knots
    x_t = x.T.contiguous()  # (d, m)
    hi = torch.searchsorted(xp_t, x_t, right=True).clamp(1, k - 1)
    hi += torch.arange(xp_t.shape[0], device=x.device)[:, None] * k  # into the flat tables
    return _on_segment(x_t, xp_t.flatten(), fp.T.flatten(), hi - 1).T


def _on_segment(x, xp, fp, lo):
    """Interpolate ``x`` on the segment from knot ``lo`` to ``lo + 1``.

    ``xp``, ``fp`` are flat knot tables and ``lo`` indexes them. A segment
    between tied knots has no width: the value on its right is used where
    ``x`` reaches the tie, the one on its left below it.
    """
    x0, x1, y0, y1 = xp[lo], xp[lo + 1], fp[lo], fp[lo + 1]
    width = x1 - x0
    safe = torch.where(width > 0, width, torch.ones_like(width))
    frac = torch.where(width > 0, (x - x0) / safe, (x >= x0).to(x0.dtype)).clamp(0.0, 1.0)
    return y0 + frac * (y1 - y0)


class BinnedInterp:
    """:func:`_interp_columns` against fixed knots, for many values, through a table.

    Why: ``torch.searchsorted`` costs 30-50 ns per value on a CPU core, which
    made the per-gene residual edit of 100,000 cells x 2,000 genes (100 knots
    each) take longer than the autoencoder. Here the range between each
    column's second and second-to-last knot is cut into ``n_bins`` equal bins
    (the outermost knots are the sample's extremes, often far out: binning to
    them left most of the mass in a few bins). Almost every bin then holds at
    most one kink, so the function on it is one line, or two lines that meet
    at the kink (or jump there, for tied knots): a value costs a bin index, a
    comparison and four table reads. Values in the rare bins with several kinks
    are searched for among the knots. The results equal :func:`_interp_columns` up to
    float rounding.

    Parameters
    ----------
    xp, fp
        ``(k, d)`` float32 knots, ``xp`` sorted per column, and the values at them.
    n_bins
        Bins per column.
    """

    #: Knots within this many bins of a bin's edge count as in the bin: far above
    #: the rounding of the bin index in float32, so a value is never read from a
    #: line that does not hold at it.
    MARGIN = 0.01

    def __init__(self, xp: torch.Tensor, fp: torch.Tensor, n_bins: int = 2048):
        if xp.dtype != torch.float32 or fp.dtype != torch.float32:
            raise TypeError(f"BinnedInterp takes float32 knots, got {xp.dtype} and {fp.dtype}.")
        k, d = xp.shape
        dev, dtype = xp.device, xp.dtype
        self.k, self.d, self.n_bins = k, d, n_bins
        xp_t, fp_t = xp.T.contiguous(), fp.T.contiguous()
        self.xp, self.fp = xp_t.flatten(), fp_t.flatten()
        # Bins 1..n_bins cover [lo, hi); bin 0 is below lo, bin n_bins + 1 at or above
        # hi. Each outer bin holds one kink, the extreme knot.
        inner = 1 if k >= 4 else 0
        self.lo, self.hi = xp[inner], xp[k - 1 - inner]
        width = self.hi - self.lo
        spread = width > 0
        self.scale = torch.where(spread, n_bins / torch.where(spread, width, 1.0), 0.0)
        pos = (xp_t - self.lo[:, None]) * self.scale[:, None]
        rows = torch.arange(d, device=dev)[:, None]
        # The line of a bin without a kink: the segment after the knots below it.
        home = (pos.floor().long() + 1).clamp(0, n_bins + 1)
        count = torch.zeros(d, n_bins + 2, dtype=torch.long, device=dev).scatter_add_(
            1, home, torch.ones_like(home))
        below = count.cumsum(1) - count
        left = (below - 1).clamp(0, k - 2)
        right = left.clone()
        # Where bins hold a kink (a knot within MARGIN, or a tie of knots: one kink),
        # the segments either side of it.
        first = torch.ones_like(xp_t, dtype=torch.bool)
        first[:, 1:] = xp_t[:, 1:] > xp_t[:, :-1]
        first &= (pos >= -self.MARGIN) & (pos <= n_bins + self.MARGIN)
        near = [((pos + side).floor().long() + 1).clamp(1, n_bins)
                for side in (-self.MARGIN, self.MARGIN)]
        kinks = torch.zeros(d, n_bins + 2, dtype=torch.long, device=dev)
        kinks.scatter_add_(1, near[0], first.long())
        kinks.scatter_add_(1, near[1], (first & (near[1] != near[0])).long())
        kink_at = torch.full((d, n_bins + 2), float("inf"), dtype=dtype, device=dev)
        after_tie = torch.searchsorted(xp_t, xp_t, right=True)
        knot = torch.arange(k, device=dev).expand(d, k)
        for bins in near:
            b = torch.where(first, bins, 0)  # bin 0 is set below: a harmless target
            kink_at.scatter_(1, b, torch.where(first, xp_t, float("inf")))
            left.scatter_(1, b, torch.where(first, (knot - 1).clamp(0, k - 2), left.gather(1, b)))
            right.scatter_(1, b, torch.where(first, (after_tie - 1).clamp(0, k - 2),
                                             right.gather(1, b)))
        # Below lo: the first value held, then the first segment from the first knot.
        # At or above hi: the last segment, then the last value held from the last knot.
        kink_at[:, 0], kink_at[:, -1] = xp_t[:, 0], xp_t[:, -1]
        right[:, 0], left[:, -1] = 0, k - 2
        # NaN marks the bins whose values are searched for: several kinks, or
        # every inner bin of a column without width.
        kink_at[kinks > 1] = float("nan")
        kink_at[~spread, 1:-1] = float("nan")
        self.kink_at = kink_at.flatten()
        self.first_bin = rows * (n_bins + 2) + 1  # flat index of each column's bin 0, + 1
        self.keys = _order_keys(self.xp, rows.expand(d, k).flatten())
        # Each line through its segment's first knot, as the reference computes it:
        # measured from a nearby knot, a steep line does not lose digits. Tables of
        # all left lines, then all right ones.
        pieces = (torch.stack([left, right]) + rows * k).flatten()
        x0, x1, y0, y1 = (table.index_select(0, pieces + i).view(2, d, -1)
                          for table, i in ((self.xp, 0), (self.xp, 1), (self.fp, 0), (self.fp, 1)))
        slope = torch.where(x1 > x0, (y1 - y0) / torch.where(x1 > x0, x1 - x0, 1.0), 0.0)
        slope[0, :, 0], slope[1, :, -1] = 0.0, 0.0
        y0[0, :, 0], y0[1, :, -1] = fp_t[:, 0], fp_t[:, -1]
        self.anchor, self.value, self.slope = x0.flatten(), y0.flatten(), slope.flatten()

    def __call__(self, x: torch.Tensor, chunk_values: int = 1 << 18) -> torch.Tensor:
        """Interpolated values at ``x``, ``(m, d)``."""
        # Column-major, so that one column's tables stay in cache while its values are
        # read, and in chunks of a few columns, so that the temporaries do too (whole
        # blocks of int64 indices made every step memory-bound).
        x = x.T.contiguous()
        out = torch.empty_like(x)
        cols = max(1, chunk_values // max(1, x.shape[1]))
        for c in range(0, self.d, cols):
            part = slice(c, c + cols)
            out[part] = self._columns(x[part], part)
        return out.T

    def _columns(self, x, part):
        def read(table, index):  # index_select: several times faster than table[index]
            return table.index_select(0, index.reshape(-1)).view(index.shape)

        b = ((x - self.lo[part, None]) * self.scale[part, None]).floor_().clamp_(-1, self.n_bins - 1)
        b += x >= self.hi[part, None]
        b = b.long()
        b += self.first_bin[part]
        kink = read(self.kink_at, b)
        piece = torch.where(x >= kink, b + len(self.kink_at), b)  # right of the kink
        out = torch.addcmul(read(self.value, piece), read(self.slope, piece),
                            x - read(self.anchor, piece))
        several = torch.isnan(kink)
        if several.any():
            several = several.nonzero(as_tuple=True)
            out[several] = self._searched(x[several], several[0] + part.start)
        return out

    def _searched(self, x, col):
        """Exact segments of values in bins with several kinks: one search over all
        columns' knots at once, on integer keys that order like (column, value)."""
        hi = torch.searchsorted(self.keys, _order_keys(x, col), right=True) - col * self.k
        return _on_segment(x, self.xp, self.fp, col * self.k + hi.clamp(1, self.k - 1) - 1)


def _order_keys(values: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """int64 keys that sort like ``(col, value)`` for float32 values, exactly.

    A float32's bits, read as an integer, order like the float for positive
    values; negative ones are mirrored (and -0.0 meets 0.0).
    """
    bits = values.to(torch.float32).contiguous().view(torch.int32).long()
    return col * (1 << 33) + torch.where(bits >= 0, bits, -(bits & 0x7FFFFFFF))


@dataclass
class QuantileEdit:
    """A learned neuron edit.

    Neuron ``j`` maps activation ``a`` to ``a + Δ_j(a)``, where ``Δ_j``
    interpolates ``target_knots[:, j] - source_knots[:, j]`` piecewise-linearly
    over ``source_knots[:, j]`` and holds the end shifts constant outside the
    source range. Inside the range this equals
    ``np.interp(a, source_knots[:, j], target_knots[:, j])``.

    Usually learned with :func:`fit_quantile_edit`.

    Parameters
    ----------
    source_knots
        ``(n_quantiles, n_neurons)`` quantiles of the source activations,
        nondecreasing per column.
    target_knots
        ``(n_quantiles, n_neurons)`` quantiles of the target activations.

    Examples
    --------
    One neuron whose source range ``[0, 1]`` maps onto ``[1, 3]``:

    >>> import torch
    >>> import sc_neuronedit as sne
    >>> edit = sne.QuantileEdit(torch.tensor([[0.0], [1.0]]), torch.tensor([[1.0], [3.0]]))
    >>> edit.apply(torch.tensor([[0.0], [0.5], [2.0]]))
    tensor([[1.],
            [2.],
            [4.]])
    """

    source_knots: torch.Tensor
    target_knots: torch.Tensor

    def __post_init__(self):
        if self.source_knots.shape != self.target_knots.shape:
            raise ValueError(
                f"source_knots {tuple(self.source_knots.shape)} and target_knots "
                f"{tuple(self.target_knots.shape)} must have the same shape."
            )
        if self.source_knots.ndim != 2 or self.source_knots.shape[0] < 2:
            raise ValueError("Knots must be (n_quantiles >= 2, n_neurons).")

    @property
    def n_neurons(self) -> int:
        """Number of neurons (columns of the knots)."""
        return self.source_knots.shape[1]

    @property
    def n_quantiles(self) -> int:
        """Number of knots per neuron."""
        return self.source_knots.shape[0]

    def to(self, device: torch.device | str) -> QuantileEdit:
        """A copy with the knots on ``device``.

        Parameters
        ----------
        device
            Torch device, e.g. ``"cpu"`` or ``"cuda"``.

        Returns
        -------
        :class:`QuantileEdit`

        Examples
        --------
        >>> import torch
        >>> import sc_neuronedit as sne
        >>> edit = sne.QuantileEdit(torch.tensor([[0.0], [1.0]]), torch.tensor([[1.0], [3.0]]))
        >>> edit.to("cpu").source_knots.device
        device(type='cpu')
        """
        return QuantileEdit(self.source_knots.to(device), self.target_knots.to(device))

    def shift(self, activations: torch.Tensor) -> torch.Tensor:
        """The shift ``Δ(a)`` for each activation.

        Parameters
        ----------
        activations
            ``(n, n_neurons)`` activations.

        Returns
        -------
        ``(n, n_neurons)`` tensor of shifts, on the device and dtype of ``activations``.

        Examples
        --------
        >>> import torch
        >>> import sc_neuronedit as sne
        >>> edit = sne.QuantileEdit(torch.tensor([[0.0], [1.0]]), torch.tensor([[1.0], [3.0]]))
        >>> edit.shift(torch.tensor([[0.0], [0.5], [2.0]]))
        tensor([[1.0000],
                [1.5000],
                [2.0000]])
        """
        self._check(activations)
        src = self.source_knots.to(activations.device, activations.dtype)
        tgt = self.target_knots.to(activations.device, activations.dtype)
        return _interp_columns(activations, src, tgt - src)

    def apply(self, activations: torch.Tensor) -> torch.Tensor:
        """Edited activations ``a + Δ(a)``.

        Parameters
        ----------
        activations
            ``(n, n_neurons)`` activations.

        Returns
        -------
        ``(n, n_neurons)`` tensor of edited activations.

        Examples
        --------
        >>> import torch
        >>> import sc_neuronedit as sne
        >>> edit = sne.QuantileEdit(torch.tensor([[0.0], [1.0]]), torch.tensor([[1.0], [3.0]]))
        >>> edit.apply(torch.tensor([[0.0], [0.5], [2.0]]))
        tensor([[1.],
                [2.],
                [4.]])
        """
        return activations + self.shift(activations)

    def outside_fraction(self, activations: torch.Tensor) -> torch.Tensor:
        """Per-neuron fraction of activations outside the source range.

        There the edit extrapolates with a constant shift.

        Parameters
        ----------
        activations
            ``(n, n_neurons)`` activations.

        Returns
        -------
        ``(n_neurons,)`` tensor of fractions in ``[0, 1]``.

        Examples
        --------
        >>> import torch
        >>> import sc_neuronedit as sne
        >>> edit = sne.QuantileEdit(torch.tensor([[0.0], [1.0]]), torch.tensor([[1.0], [3.0]]))
        >>> edit.outside_fraction(torch.tensor([[-1.0], [0.5], [2.0]]))
        tensor([0.6667])
        """
        self._check(activations)
        src = self.source_knots.to(activations.device, activations.dtype)
        outside = (activations < src[0]) | (activations > src[-1])
        return outside.to(activations.dtype).mean(dim=0)

    def summary(self) -> dict[str, torch.Tensor]:
        """Per-neuron statistics of the shift over the knots.

        Returns
        -------
        Dict of ``(n_neurons,)`` tensors: ``mean_shift``, ``min_shift`` and
        ``max_shift`` of ``target_knots - source_knots`` over the knots, and
        ``source_lower`` and ``source_upper``, the ends of the source range.

        Examples
        --------
        >>> import torch
        >>> import sc_neuronedit as sne
        >>> edit = sne.QuantileEdit(torch.tensor([[0.0], [1.0]]), torch.tensor([[1.0], [3.0]]))
        >>> stats = edit.summary()
        >>> stats["mean_shift"], stats["min_shift"], stats["max_shift"]
        (tensor([1.5000]), tensor([1.]), tensor([2.]))
        """
        delta = self.target_knots - self.source_knots
        return {
            "mean_shift": delta.mean(dim=0),
            "min_shift": delta.min(dim=0).values,
            "max_shift": delta.max(dim=0).values,
            "source_lower": self.source_knots[0],
            "source_upper": self.source_knots[-1],
        }

    def _check(self, activations: torch.Tensor) -> None:
        if activations.ndim != 2 or activations.shape[1] != self.n_neurons:
            raise ValueError(
                f"Expected activations of shape (n, {self.n_neurons}), "
                f"got {tuple(activations.shape)}."
            )


def fit_quantile_edit(
    source: torch.Tensor,
    target: torch.Tensor,
    *,
    n_quantiles: int = 100,
    source_weights: torch.Tensor | None = None,
    target_weights: torch.Tensor | None = None,
) -> QuantileEdit:
    """Learn a :class:`QuantileEdit` from source and target activations.

    Parameters
    ----------
    source, target
        ``(n_source, d)`` and ``(n_target, d)`` activations of the edited layer.
    n_quantiles
        Number of knots, evenly spaced in probability from 0 to 1 (so the first
        and last knots are the minimum and maximum).
    source_weights, target_weights
        Optional per-cell weights, e.g. ``1 / group size`` so that every group
        contributes equally and a change of composition between source and
        target is not learned as the effect.

    Returns
    -------
    :class:`QuantileEdit` mapping the source quantiles onto the target quantiles.

    Examples
    --------
    >>> import torch
    >>> import sc_neuronedit as sne
    >>> gen = torch.Generator().manual_seed(0)
    >>> source = torch.randn(500, 3, generator=gen)
    >>> target = 2 * torch.randn(500, 3, generator=gen) + 1
    >>> edit = sne.fit_quantile_edit(source, target, n_quantiles=50)
    >>> edit.source_knots.shape
    torch.Size([50, 3])
    >>> torch.allclose(edit.apply(edit.source_knots), edit.target_knots)
    True
    """
    if n_quantiles < 2:
        raise ValueError(f"n_quantiles must be at least 2, got {n_quantiles}.")
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(
            f"source {tuple(source.shape)} and target {tuple(target.shape)} must be "
            "2-D with the same number of neurons."
        )
    for name, t in (("source", source), ("target", target)):
        if not torch.isfinite(t).all():
            raise ValueError(f"The {name} activations contain NaN or inf.")
    probs = torch.linspace(0.0, 1.0, n_quantiles, dtype=source.dtype, device=source.device)
    return QuantileEdit(
        weighted_quantiles(source, probs, source_weights),
        weighted_quantiles(target, probs, target_weights),
    )
