from __future__ import annotations

import ast
from collections.abc import Sequence

import numpy as np

from ..metrics._distribution import _dense
from ._common import documented, finish, panels, result

#: Grid points of each marker's density curves.
_N_GRID = 512
#: The bandwidth is at least this share of the plotted range, so that point
#: masses (e.g. the exact zeros of cytometry channels) stay finite bumps.
_MIN_BANDWIDTH = 0.02
#: Show the share of exact zeros in a panel when a batch has at least this much.
_SHOW_ZEROS = 0.05
#: A row with such a note gets this much more height, so the note sits above the curves.
_NOTE_HEADROOM = 1.3

_COLUMNS = ("reference, before", "reference, after", "other cells, before", "other cells, after")


def _marker_columns(adata, markers: Sequence[str]) -> tuple[list[int], list[str]]:
    """Column index and row label of each marker: a var name, or a value of ``var['marker']``."""
    names = adata.var_names
    by_marker = adata.var["marker"].astype(str) if "marker" in adata.var.columns else None
    idx, labels, missing = [], [], []
    for m in markers:
        i = names.get_indexer([m])[0]
        if i >= 0:
            idx.append(int(i))
            labels.append(str(m))
            continue
        hits = np.flatnonzero(by_marker.to_numpy() == str(m)) if by_marker is not None else []
        if len(hits) > 1:
            raise ValueError(f"Marker {m!r} names several channels of adata.var['marker']: "
                             f"{', '.join(names[hits])}; give the var name instead.")
        if len(hits) == 1:
            idx.append(int(hits[0]))
            labels.append(f"{m} ({names[hits[0]]})")
        else:
            missing.append(m)
    if missing:
        if by_marker is not None:
            known = [v for v in dict.fromkeys(by_marker) if v and v != "nan"]
            where = f"adata.var_names or adata.var['marker'] (markers: {', '.join(known)})"
        else:
            where = f"adata.var_names ({', '.join(map(str, names[:30]))}{', …' if len(names) > 30 else ''})"
        raise KeyError(f"Not in {where}: {missing}.")
    return idx, labels


def _reference_mask(adata, params: dict) -> np.ndarray:
    """Reference cells from the stored ``reference_key`` / ``reference_value`` (kept as str)."""
    key, value = params["reference_key"], str(params["reference_value"])
    if key not in adata.obs.columns:
        raise KeyError(f"The reference column {key!r} of the result is not in adata.obs; "
                       f"available: {', '.join(map(str, adata.obs.columns))}.")
    col = adata.obs[key].astype(str).to_numpy()
    values = [value]
    if value.startswith(("[", "(")):  # a list of reference values, stored as its str()
        try:
            values = [str(v) for v in ast.literal_eval(value)]
        except (ValueError, SyntaxError):
            pass
    mask = np.isin(col, values)
    if not mask.any():
        raise ValueError(f"No cell has adata.obs[{key!r}] == {value!r} (the result's reference).")
    return mask


def _bandwidth(x: np.ndarray) -> float:
    """Silverman's rule; the IQR term is skipped when a point mass makes it zero."""
    sd = x.std()
    iqr = np.subtract(*np.percentile(x, [75, 25])) / 1.349
    spread = min(sd, iqr) if iqr > 0 else sd
    return 0.9 * spread * len(x) ** -0.2


def _kde(x: np.ndarray, grid: np.ndarray, h: float) -> np.ndarray:
    """Gaussian KDE of ``x`` on the even ``grid``: linear binning, then a convolution.

    Normalised by all of ``x``: mass outside the grid is not shown, not spread.
    """
    dx = grid[1] - grid[0]
    pos = (x - grid[0]) / dx
    inside = (pos >= 0) & (pos <= len(grid) - 1)
    pos = pos[inside]
    left = np.minimum(np.floor(pos).astype(int), len(grid) - 2)
    frac = pos - left
    counts = (np.bincount(left, 1 - frac, minlength=len(grid))
              + np.bincount(left + 1, frac, minlength=len(grid)))
    half = min(int(np.ceil(4 * h / dx)), len(grid) - 1)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) * dx / h) ** 2) / (np.sqrt(2 * np.pi) * h)
    return np.convolve(counts, kernel)[half:half + len(grid)] / len(x)


@documented
def batch_densities(adata, markers: Sequence[str] | str, key: str = "batch_corrected", *,
                    batches: Sequence | None = None, layer: str | None = None,
                    ax=None, show: bool | None = None, save=None):
    """Per-marker densities of each batch, before and after batch correction.

    One row per marker and four columns: the reference cells before and after
    correction, then all other cells before and after. Each panel overlays one
    Gaussian kernel density per batch. The four panels of a row share their x
    range and y scale, and every curve of a row uses the same bandwidth, so
    heights compare across batches and panels.

    Exact zeros (common in cytometry) form a point mass that the density draws
    as a bump of the bandwidth's width (at least 2 % of the x range) at zero;
    where a batch has 5 % or more exact zeros, the panel states the range of
    zero shares over its batches.

    Parameters
    ----------
    adata
        AnnData holding the result of :func:`~sc_neuronedit.tl.batch_correct`.
    markers
        Var names, or values of ``adata.var["marker"]`` (e.g. ``"CD3"``), one
        row each.
    key
        The ``key_added`` of the run; the corrected values are ``adata.layers[key]``.
    batches
        Batches to show, in this order; default all, in the order of the
        categories of ``adata.obs[batch_key]`` (sorted if it is not categorical).
    layer
        Layer of the values before correction; default the run's input layer.
    {common_params}
        With ``ax``, give 4 axes per marker (e.g. an array of shape
        ``(n_markers, 4)``); the batch legend is then left out.

    {figure_returns}

    Examples
    --------
    >>> import sc_neuronedit as sne
    >>> cytof = sne.datasets.cytonorm_gates()
    >>> sne.pp.arcsinh(cytof, 5)
    >>> sne.tl.batch_correct(cytof, "batch", reference_key="reference", reference_value=True,
    ...     layer="arcsinh", mask_var=cytof.var["marker"].astype(str) != "")
    >>> fig = sne.pl.batch_densities(cytof, ["CD3", "CD19"], save="densities.png")
    """
    import matplotlib.pyplot as plt

    params = result(adata, key).get("params", {})
    if "batch_key" not in params or "reference_key" not in params:
        raise ValueError(f"adata.uns[{key!r}] is not a result of tl.batch_correct "
                         "(its params have no batch_key / reference_key).")
    if key not in adata.layers:
        raise KeyError(f"The corrected layer adata.layers[{key!r}] is missing; available layers: "
                       f"{', '.join(adata.layers.keys()) or '(none)'}.")
    from .._anndata import get_matrix, resolve_groups

    markers = [markers] if isinstance(markers, str) else list(markers)
    if not markers:
        raise ValueError("markers is empty; give at least one var name or marker.")
    idx, labels = _marker_columns(adata, markers)
    layer = params.get("layer") if layer is None else layer
    before = _dense(get_matrix(adata, layer)[:, idx])
    after = _dense(adata.layers[key][:, idx])

    batch = resolve_groups(adata, params["batch_key"]).astype(str)
    col = adata.obs[params["batch_key"]]
    levels = [str(b) for b in (col.cat.categories if hasattr(col, "cat") else sorted(set(col), key=str))]
    levels = [b for b in levels if (batch == b).any()]
    if batches is not None:
        batches = [str(b) for b in ([batches] if isinstance(batches, str) else batches)]
        unknown = [b for b in batches if b not in levels]
        if unknown:
            raise ValueError(f"batches {unknown} not in adata.obs[{params['batch_key']!r}]; "
                             f"available: {', '.join(levels)}.")
        levels = batches
    reference = _reference_mask(adata, params)
    # (values, cells) of each panel, in the order of _COLUMNS
    views = [(before, reference), (after, reference), (before, ~reference), (after, ~reference)]
    palette = plt.get_cmap("tab10" if len(levels) <= 10 else "tab20").colors
    colors = [palette[i % len(palette)] for i in range(len(levels))]

    nrows = len(markers)
    fig, flat, created = panels(ax, 4 * nrows, ncols=4, panel_size=(2.625, 1.9 + 0.9 / nrows),
                                layout="constrained")
    axes = flat.reshape(nrows, 4)
    for r, label in enumerate(labels):
        samples = [[values[cells & (batch == b), r] for b in levels] for values, cells in views]
        pooled = np.concatenate([x for panel in samples for x in panel])
        lo, hi = np.percentile(pooled, [0.5, 99.5]) if len(pooled) else (0.0, 1.0)
        span = max(hi - lo, 1e-6)
        sizeable = [_bandwidth(x) for panel in samples for x in panel if len(x) >= 2]
        h = max(np.median(sizeable) if sizeable else 0.0, _MIN_BANDWIDTH * span)
        grid = np.linspace(lo - 2 * h, hi + 2 * h, _N_GRID)
        for c, (ax, panel) in enumerate(zip(axes[r], samples)):
            for b, x, color in zip(levels, panel, colors):
                if len(x) >= 2:
                    ax.plot(grid, _kde(x, grid, h), color=color, lw=1.2, label=b)
            zeros = [np.mean(x == 0) for x in panel if len(x)]
            if not zeros:
                ax.text(0.5, 0.5, "no cells", transform=ax.transAxes, ha="center",
                        va="center", color="grey", fontsize=8)
            elif max(zeros) >= _SHOW_ZEROS:
                share = (f"{min(zeros):.0%}–{max(zeros):.0%}" if max(zeros) - min(zeros) >= 0.01
                         else f"{max(zeros):.0%}")
                ax.text(0.98, 0.95, f"zeros: {share}", transform=ax.transAxes, ha="right",
                        va="top", color="dimgrey", fontsize=7)
            ax.set_xlim(grid[0], grid[-1])
            ax.tick_params(labelsize=7)
            ax.spines[["top", "right"]].set_visible(False)
            if r == 0:
                ax.set_title(_COLUMNS[c], fontsize=9)
            if r == nrows - 1:
                ax.set_xlabel(layer or "X", fontsize=8)
        axes[r, 0].set_ylabel(f"{label}\ndensity", fontsize=8)
        top = max(a.get_ylim()[1] for a in axes[r])  # one y scale per row, as sharey would
        if any(a.texts for a in axes[r]):
            top *= _NOTE_HEADROOM  # room above the curves for the "zeros" note
        for a in axes[r]:
            a.set_ylim(0, top)
            if a is not axes[r, 0]:
                a.tick_params(labelleft=False)

    if created:
        handles = [plt.Line2D([], [], color=color, lw=2) for color in colors]
        legend_rows = -(-len(levels) // 8)  # at most 8 entries a row, rows filled evenly
        fig.legend(handles, levels, title=params["batch_key"], loc="outside upper center",
                   ncols=-(-len(levels) // legend_rows), frameon=False, fontsize=8, title_fontsize=8)
    return finish(fig, show=show, save=save, name="batch_densities")
