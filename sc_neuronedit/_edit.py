"""The neuron edit: per-neuron piecewise-linear quantile shifts.

Pure array math, no AnnData and no autoencoder. The edit works on
``(n_cells, n_neurons)`` tensors, vectorised over neurons, on any device;
:func:`population_plan` decides from per-cell labels which populations learn
an edit of their own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["QuantileEdit", "fit_quantile_edit", "population_plan", "weighted_quantiles"]


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
    lo = hi - 1
    x0 = torch.gather(xp_t, 1, lo)
    x1 = torch.gather(xp_t, 1, hi)
    fp_t = fp.T.contiguous()
    y0 = torch.gather(fp_t, 1, lo)
    y1 = torch.gather(fp_t, 1, hi)
    width = x1 - x0
    safe = torch.where(width > 0, width, torch.ones_like(width))
    frac = torch.where(width > 0, (x_t - x0) / safe, (x_t >= x0).to(x0.dtype)).clamp(0.0, 1.0)
    return (y0 + frac * (y1 - y0)).T


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


#: Fewest source and target cells a population learns an edit of its own from.
MIN_POPULATION_CELLS = 20
#: With groups, a population needs this many groups of at least :data:`MIN_GROUP_CELLS` cells.
MIN_POPULATION_GROUPS = 2
MIN_GROUP_CELLS = 5


def quantile_map(values, source, goal, goal_weights, n_quantiles: int) -> np.ndarray:
    """Per-feature quantile map of the rows ``source`` onto the rows ``goal`` (weighted by
    ``goal_weights``, or not), applied to ``values``; arrays in, a float32 array out."""
    edit = fit_quantile_edit(
        torch.as_tensor(source, dtype=torch.float32), torch.as_tensor(goal, dtype=torch.float32),
        n_quantiles=n_quantiles,
        target_weights=None if goal_weights is None else torch.as_tensor(goal_weights,
                                                                         dtype=torch.float32),
    )
    return edit.apply(torch.as_tensor(values, dtype=torch.float32)).numpy()


def population_plan(
    source: np.ndarray,
    target: np.ndarray,
    *,
    source_groups: np.ndarray | None = None,
    target_groups: np.ndarray | None = None,
    min_cells: int = MIN_POPULATION_CELLS,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """Which populations learn an edit of their own, and from which cells.

    A population gets its own edit when it has at least ``min_cells`` source
    and target cells. With groups (cell types, donors), a side whose cells span
    several groups must also hold at least :data:`MIN_POPULATION_GROUPS` groups
    of at least :data:`MIN_GROUP_CELLS` cells within the population, and only
    those groups take part: a quantile edit weighted per group would otherwise
    let a handful of cells speak for a whole group.

    Parameters
    ----------
    source, target
        Population label per source and per target cell (strings).
    source_groups, target_groups
        Group label per source and per target cell, or ``None``.
    min_cells
        Fewest source and target cells (after dropping small groups).

    Returns
    -------
    ``own``: label → (source mask, target mask) of the cells each such
    population learns from; ``fallback``: label → why it uses the pooled edit.

    Examples
    --------
    >>> import numpy as np
    >>> from sc_neuronedit._edit import population_plan
    >>> source = np.array(["B"] * 30 + ["T"] * 5)
    >>> target = np.array(["B"] * 25 + ["T"] * 40)
    >>> own, fallback = population_plan(source, target)
    >>> sorted(own), fallback
    (['B'], {'T': '5 source and 40 target cells (at least 20 of each needed)'})
    """
    source, target = np.asarray(source).astype(str), np.asarray(target).astype(str)
    sides = []
    for labels, groups in ((source, source_groups), (target, target_groups)):
        groups = None if groups is None else np.asarray(groups).astype(str)
        sides.append((labels, groups if groups is not None and len(np.unique(groups)) > 1 else None))
    own, fallback = {}, {}
    for label in np.unique(np.concatenate([source, target])):
        masks, reasons = [], []
        for (labels, groups), side in zip(sides, ("source", "target")):
            mask = labels == label
            if groups is not None:
                kept, counts = np.unique(groups[mask], return_counts=True)
                kept = kept[counts >= MIN_GROUP_CELLS]
                mask &= np.isin(groups, kept)
                if len(kept) < MIN_POPULATION_GROUPS:
                    reasons.append(f"{len(kept)} {side} group(s) of at least {MIN_GROUP_CELLS} cells "
                                   f"(at least {MIN_POPULATION_GROUPS} needed)")
            masks.append(mask)
        n_s, n_t = int(masks[0].sum()), int(masks[1].sum())
        if min(n_s, n_t) < min_cells:
            reasons.insert(0, f"{n_s} source and {n_t} target cells (at least {min_cells} of each needed)")
        if reasons:
            fallback[str(label)] = "; ".join(reasons)
        else:
            own[str(label)] = (masks[0], masks[1])
    return own, fallback
