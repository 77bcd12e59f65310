"""Compiled CPU kernels: the per-feature residual edit, a sparse first layer and a
cache-friendly transpose for prediction; the level-binned residual quantiles for
fitting.

NumPy arrays in and out, no torch and no AnnData. numba comes with scanpy.

Why compiled: the residual edit of ``decode="edited_residual"`` evaluates one
piecewise-linear function per feature at every value of the prediction (2 x
10^8 values for 100,000 cells x 2,000 genes). As torch tensor operations that
took several passes over memory per value and longer than the autoencoder
itself; here it is one pass, with each feature's tables in L1 cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["KnotTables", "LevelTables", "csr_linear", "edit_columns", "edited_residual", "knot_tables",
           "level_quantiles", "level_residual", "level_tables", "threads", "transpose_into"]

#: Bins per feature of the lookup that finds a value's segment (see :func:`knot_tables`).
N_BINS = 1024


def threads(n: int):
    """Run the kernels on ``n`` threads (at most numba's pool size)."""
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))


@numba.njit(inline="always")
def _bin(v, lo, scale, n_bins):
    """Bin of ``v``: nondecreasing in ``v``, which the exactness of the lookup needs."""
    f = (v - lo) * scale
    if f >= 0:
        if f < n_bins:
            return int(f)
        return n_bins - 1
    return 0  # below the range, and NaN


@dataclass
class KnotTables:
    """Per-feature tables of piecewise-linear functions, for :func:`edited_residual`.

    ``knots`` is ``(d, k + 2)``: the knots, padded with two ``inf``. ``lines``
    is ``(d, k + 1, 4)`` (``(d, 0, 4)`` when built without lines): per segment
    its first knot, width, value at the first knot and slope; segment ``s``
    holds the values with ``s`` knots at or below them, so the first and last
    segments hold the end values constant.
    ``first[j, b]`` counts the knots of feature ``j`` in bins below ``b``;
    ``lo`` and ``scale`` map a value to its bin.
    """

    knots: np.ndarray
    lines: np.ndarray
    lo: np.ndarray
    scale: np.ndarray
    first: np.ndarray


def knot_tables(xp: np.ndarray, fp: np.ndarray, n_bins: int = N_BINS, *, lines: bool = True) -> KnotTables:
    """Tables for evaluating ``np.interp(x, xp[:, j], fp[:, j])`` per feature ``j``.

    Parameters
    ----------
    xp, fp
        ``(k, d)`` knots (``k >= 2``), sorted per column, and the function's values at them.
        Outside the knots the end values are held; between tied knots the value
        right of the tie is used (as :func:`sc_neuronedit._edit._interp_columns`).
    n_bins
        Bins over each feature's range between its second and second-to-last
        knot (the outermost knots are a sample's extremes, often far out).
    lines
        Build the per-segment lines (``False``: the knots and their lookup only,
        for a search without the function, as :func:`level_residual` does).
    """
    xp = np.ascontiguousarray(np.asarray(xp, dtype=np.float32).T)
    fp = np.ascontiguousarray(np.asarray(fp, dtype=np.float32).T)
    if xp.shape != fp.shape or xp.shape[1] < 2:
        raise ValueError(f"xp and fp must both be (k >= 2, d), got {xp.shape[::-1]} and {fp.shape[::-1]}.")
    # int16 counts where the knots allow: the smaller table makes the kernel ~15 % faster.
    first = np.zeros((xp.shape[0], n_bins + 1), dtype=np.int16 if xp.shape[1] < 2**15 else np.int32)
    return KnotTables(*_knot_tables(xp, fp, first, lines), first)


@numba.njit(cache=True)
def _knot_tables(xp, fp, first, with_lines):
    d, k = xp.shape
    n_bins = first.shape[1] - 1
    knots = np.full((d, k + 2), np.inf, dtype=np.float32)
    knots[:, :k] = xp
    lines = np.zeros((d, k + 1 if with_lines else 0, 4), dtype=np.float32)
    lo = np.zeros(d, dtype=np.float32)
    scale = np.zeros(d, dtype=np.float32)
    inner = 1 if k >= 4 else 0
    for j in range(d):
        for s in range(1, k if with_lines else 0):
            width = xp[j, s] - xp[j, s - 1]
            lines[j, s, 0] = xp[j, s - 1]
            lines[j, s, 1] = width
            lines[j, s, 2] = fp[j, s - 1]
            if width > 0:
                lines[j, s, 3] = (fp[j, s] - fp[j, s - 1]) / width
        if with_lines:
            lines[j, 0, 0], lines[j, 0, 2] = xp[j, 0], fp[j, 0]
            lines[j, k, 0], lines[j, k, 2] = xp[j, k - 1], fp[j, k - 1]
        a, b = xp[j, inner], xp[j, k - 1 - inner]
        lo[j] = a
        if b > a:
            scale[j] = np.float32(n_bins) / (b - a)
        # Counting each knot in its own bin, by the same function as the values,
        # makes first[b] a lower and first[b + 1] an upper bound of the number of
        # knots <= any value in bin b: the search below is exact.
        for q in range(k):
            first[j, _bin(xp[j, q], lo[j], scale[j], n_bins) + 1] += 1
        for t in range(n_bins):
            first[j, t + 1] += first[j, t]
    return knots, lines, lo, scale


@numba.njit(inline="always")
def _at_or_below(r, kn, fj, lj, sj, n_bins):
    """The number of knots at or below ``r``: the segment it lies in."""
    b = _bin(r, lj, sj, n_bins)
    a, c = fj[b], fj[b + 1]
    # Knots <= r, counted from the lower bound; bins rarely hold more than two.
    hi = a + (kn[a] <= r) + (kn[a + 1] <= r)
    if c - a > 2:
        while hi < c and kn[hi] <= r:
            hi += 1
    return hi


@numba.njit(inline="always")
def _segment(r, kn, ln, fj, lj, sj, n_bins):
    """Segment of ``r`` (the number of knots at or below it) and its offset into it."""
    hi = _at_or_below(r, kn, fj, lj, sj, n_bins)
    # Within segment hi, r - ln[hi, 0] lies in [0, width]; the clamp keeps the
    # constant end segments constant at +-inf.
    t = r - ln[hi, 0]
    t = t if t > 0 else np.float32(0)
    t = t if t < ln[hi, 1] else ln[hi, 1]
    return hi, t


@numba.njit(parallel=True, cache=True)
def _edited_residual(xT, dT, eT, knots, lines, lo, scale, first):
    d, n = xT.shape
    n_bins = first.shape[1] - 1
    # Feature-major, so that a feature's tables stay in L1 cache over its values.
    for j in numba.prange(d):
        kn, ln, fj, lj, sj = knots[j], lines[j], first[j], lo[j], scale[j]
        for i in range(n):
            r = xT[j, i] - dT[j, i]
            hi, t = _segment(r, kn, ln, fj, lj, sj, n_bins)
            eT[j, i] += r + (ln[hi, 2] + ln[hi, 3] * t)


def edited_residual(xT: np.ndarray, dT: np.ndarray, eT: np.ndarray, tables: KnotTables) -> None:
    """``eT += r + f(r)`` in place, with ``r = xT - dT`` and ``f`` per feature from ``tables``.

    All three are feature-major ``(d, n)`` float32: the values, their
    reconstruction and the decoded edit.
    """
    _edited_residual(xT, dT, eT, tables.knots, tables.lines, tables.lo, tables.scale, tables.first)


@dataclass
class LevelTables:
    """Tables of a level-conditional residual edit, for :func:`level_residual`.

    ``search`` holds the source knots of feature ``j`` and bin ``b`` in row
    ``j * K + b`` (only its knots and lookup are used). ``source_edges`` and
    ``target_edges`` are ``(d, K - 1)``; ``target`` the ``(d, K, q)`` target knots.
    """

    source_edges: np.ndarray
    target_edges: np.ndarray
    search: KnotTables
    target: np.ndarray


#: Lookup bins per feature and level bin: fewer than :data:`N_BINS`, so that a feature's
#: tables for all its level bins stay in L1 cache together.
LEVEL_LOOKUP_BINS = 256


def level_tables(source_edges: np.ndarray, target_edges: np.ndarray, source_knots: np.ndarray,
                 target_knots: np.ndarray, n_bins: int = LEVEL_LOOKUP_BINS) -> LevelTables:
    """Tables for :func:`level_residual` from a ``LevelResidualEdit``'s arrays.

    Parameters
    ----------
    source_edges, target_edges
        ``(K - 1, d)`` bin edges.
    source_knots, target_knots
        ``(K, q, d)`` residual knots per bin.
    n_bins
        Lookup bins per feature and level bin (see :func:`knot_tables`).
    """
    k, q, d = source_knots.shape
    xp = np.asarray(source_knots, dtype=np.float32).transpose(1, 2, 0).reshape(q, d * k)
    return LevelTables(
        np.ascontiguousarray(np.asarray(source_edges, dtype=np.float32).T),
        np.ascontiguousarray(np.asarray(target_edges, dtype=np.float32).T),
        knot_tables(xp, xp, n_bins=n_bins, lines=False),
        np.ascontiguousarray(np.asarray(target_knots, dtype=np.float32).transpose(2, 0, 1)),
    )


#: Values per feature whose bins are counted at once by :func:`_level_residual`.
LEVEL_BLOCK = 2048


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _level_residual(xT, dT, eT, s_edges, t_edges, knots, lo, scale, first, target):
    d, n = xT.shape
    n_edges, q = s_edges.shape[1], target.shape[2]
    k = n_edges + 1
    n_bins = first.shape[1] - 1
    for j in numba.prange(d):
        se, te, tg = s_edges[j], t_edges[j], target[j]
        s_bin = np.empty(LEVEL_BLOCK, np.int32)
        t_bin = np.empty(LEVEL_BLOCK, np.int32)
        for i0 in range(0, n, LEVEL_BLOCK):
            m = min(LEVEL_BLOCK, n - i0)
            dj, ej = dT[j, i0 : i0 + m], eT[j, i0 : i0 + m]
            # Bins first, one edge at a time over a block of values: these loops
            # vectorise, where counting edges per value did not (it doubled the time).
            s_bin[:m] = 0
            t_bin[:m] = 0
            for a in range(n_edges):
                sa, ta = se[a], te[a]
                for i in range(m):
                    s_bin[i] += sa <= dj[i]
                    t_bin[i] += ta <= ej[i]
            for i in range(m):
                dv, ev = dj[i], ej[i]
                r = xT[j, i0 + i] - dv
                row = j * k + s_bin[i]
                kn = knots[row]
                hi = _at_or_below(r, kn, first[row], lo[row], scale[row], n_bins)
                tt = tg[t_bin[i]]
                if hi == 0:
                    ej[i] = ev + r + (tt[0] - kn[0])
                elif hi == q:
                    ej[i] = ev + r + (tt[q - 1] - kn[q - 1])
                else:
                    # kn[hi - 1] <= r < kn[hi]: a segment of positive width. Dividing
                    # here instead of reading a slope table keeps the tables of all
                    # of a feature's bins in L1 cache.
                    f = (r - kn[hi - 1]) / (kn[hi] - kn[hi - 1])
                    ej[i] = ev + (tt[hi - 1] + f * (tt[hi] - tt[hi - 1]))


def level_residual(xT: np.ndarray, dT: np.ndarray, eT: np.ndarray, tables: LevelTables) -> None:
    """``eT += r'`` in place: the level-conditional edit of ``r = xT - dT``.

    As :func:`edited_residual`, but the source bin of each value comes from
    ``dT`` and the target bin from ``eT`` (read before it is overwritten).
    """
    s = tables.search
    _level_residual(xT, dT, eT, tables.source_edges, tables.target_edges, s.knots, s.lo, s.scale,
                    s.first, tables.target)


def edit_columns(values_t: np.ndarray, tables: KnotTables) -> np.ndarray:
    """``values + f(values)`` for feature-major ``(d, n)`` float32 ``values_t``."""
    out = np.zeros_like(values_t)
    edited_residual(values_t, np.zeros_like(values_t), out, tables)
    return out


@numba.njit(parallel=True, cache=True)
def _csr_linear(indptr, indices, data, weight_t, bias, out):
    n, width = out.shape
    for i in numba.prange(n):
        row = out[i]
        row[:] = bias
        for p in range(indptr[i], indptr[i + 1]):
            v, w = data[p], weight_t[indices[p]]
            for o in range(width):
                row[o] += v * w[o]


def csr_linear(block, weight_t: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``block @ weight_t + bias`` for a SciPy CSR ``block``, touching only its non-zeros.

    ``weight_t`` is ``(in, out)`` float32, C-contiguous.
    """
    out = np.empty((block.shape[0], weight_t.shape[1]), dtype=np.float32)
    _csr_linear(block.indptr, block.indices, block.data.astype(np.float32, copy=False),
                weight_t, bias, out)
    return out


@numba.njit(parallel=True, cache=True)
def _transpose_into(src, dst, tile):
    n, d = src.shape
    # Square tiles: both the rows read and the rows written stay in cache.
    for ti in numba.prange((n + tile - 1) // tile):
        i0 = ti * tile
        i1 = min(i0 + tile, n)
        for j0 in range(0, d, tile):
            j1 = min(j0 + tile, d)
            for i in range(i0, i1):
                for j in range(j0, j1):
                    dst[j, i] = src[i, j]


def transpose_into(src: np.ndarray, dst: np.ndarray, tile: int = 32) -> None:
    """``dst[:] = src.T`` for 2-D arrays (``dst`` may be a strided view)."""
    _transpose_into(src, dst, tile)


@numba.njit(inline="always")
def _sorted_quantiles(values, weights, probs, out):
    """``weighted_quantiles`` of one sorted sample: each value sits at the midpoint of its
    cumulative weight; between midpoints linear, outside them the extremes, and at tied
    midpoints (zero weights) the last tied value."""
    m = values.shape[0]
    total = weights.sum()
    pos = np.empty(m)
    acc = 0.0
    for i in range(m):
        acc += weights[i]
        pos[i] = (acc - 0.5 * weights[i]) / total
    for a in range(probs.shape[0]):
        p = min(max(probs[a], pos[0]), pos[m - 1])
        hi = np.searchsorted(pos, p, side="right")
        if hi >= m:
            out[a] = values[m - 1]
        else:
            f = (p - pos[hi - 1]) / (pos[hi] - pos[hi - 1])
            out[a] = values[hi - 1] + f * (values[hi] - values[hi - 1])


@numba.njit(parallel=True, cache=True)
def _level_quantiles(res, dec, weights, edge_probs, probs, edges, knots, ess):
    d, n = res.shape
    n_bins = ess.shape[0]
    for j in numba.prange(d):
        # Stable sorts of cells that arrive ordered by weight: tied values are
        # ordered by weight, so the result does not depend on the cells' order.
        order = np.argsort(dec[j], kind="mergesort")
        _sorted_quantiles(dec[j][order], weights[order], edge_probs, edges[:, j])
        level = np.searchsorted(edges[:, j], dec[j], side="right")
        # Counting sort of the residuals' value order by level bin: (bin, value) order.
        start = np.zeros(n_bins + 1, np.int64)
        for i in range(n):
            start[level[i] + 1] += 1
        for b in range(n_bins):
            start[b + 1] += start[b]
        fill = start[:n_bins].copy()
        by_bin = np.empty(n, np.int64)
        for i in np.argsort(res[j], kind="mergesort"):
            by_bin[fill[level[i]]] = i
            fill[level[i]] += 1
        for b in range(n_bins):
            cells = by_bin[start[b]:start[b + 1]]
            w = weights[cells]
            total, square = w.sum(), (w * w).sum()
            if total <= 0:  # an empty bin: no cells to count; the caller falls back
                ess[b, j] = 0.0
                knots[b, :, j] = 0.0
                continue
            ess[b, j] = total * total / square
            _sorted_quantiles(res[j][cells], w, probs, knots[b, :, j])


def level_quantiles(residuals: np.ndarray, decoded: np.ndarray, weights: np.ndarray, n_bins: int,
                    probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One side of a level-conditional residual edit, per feature in one compiled pass.

    Parameters
    ----------
    residuals, decoded
        ``(n, d)``: each cell's residual and decoded value (copied once, feature-major in
        float64 with the cells ordered by weight).
    weights
        ``(n,)`` float64 non-negative cell weights with a positive sum.
    n_bins
        Level bins: their edges are the weighted quantiles of the decoded values at
        ``1/K, ..., (K-1)/K``; a value's bin is the number of edges at or below it.
    probs
        ``(q,)`` probabilities of the residual quantiles within each bin.

    Returns
    -------
    ``edges`` ``(K - 1, d)``, ``knots`` ``(K, q, d)`` (weighted quantiles as
    :func:`sc_neuronedit.weighted_quantiles`, within each bin) and ``ess`` ``(K, d)``,
    the effective cell count of each bin (Kish; 0 for an empty bin, whose knots are 0).
    """
    d = residuals.shape[1]
    # Cells ordered by weight once, for the stable sorts' tie order.
    by_weight = np.argsort(weights, kind="stable")
    res = np.ascontiguousarray(residuals[by_weight].T, dtype=np.float64)
    dec = np.ascontiguousarray(decoded[by_weight].T, dtype=np.float64)
    w = np.ascontiguousarray(weights[by_weight], dtype=np.float64)
    edges = np.empty((n_bins - 1, d))
    knots = np.empty((n_bins, len(probs), d))
    ess = np.empty((n_bins, d))
    edge_probs = np.arange(1, n_bins, dtype=np.float64) / n_bins
    _level_quantiles(res, dec, w, edge_probs, np.asarray(probs, dtype=np.float64), edges, knots, ess)
    return edges, knots, ess
