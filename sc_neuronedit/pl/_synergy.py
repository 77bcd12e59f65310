from __future__ import annotations

import numpy as np

from ._common import documented, finish, panels, result


@documented
def synergy(adata, key: str = "synergy", *, score: str = "mean_shift", alpha: float = 0.05,
            vmax: float | None = None, ax=None, show: bool | None = None, save=None):
    """Heatmap of a synergy score, combination x feature; dots mark q < ``alpha``.

    Parameters
    ----------
    adata
        AnnData holding the result of :func:`~sc_neuronedit.tl.synergy` or of
        :func:`~sc_neuronedit.tl.predict_combination` with a measured combination.
    key
        The ``key_added`` of the run.
    score
        ``"mean_shift"``, ``"median_shift"`` or ``"bliss_excess"``: diverging
        colours centred on 0, red = more than the no-interaction prediction.
    alpha
        Features whose q-value is below this get a dot.
    vmax
        Colour scale limit (symmetric around 0); default the table's largest
        absolute value. Give the same value to compare several runs.
    {common_params}

    Returns
    -------
    The figure, or ``None`` with ``show=True``.

    Examples
    --------
    >>> import sc_neuronedit as sne
    >>> adata = sne.datasets.bcrxl_combination(gamma=1.0)
    >>> sne.tl.synergy(adata, "condition", control="control",
    ...                combinations={"A+B": ("A", "B")})
    >>> fig = sne.pl.synergy(adata, score="median_shift")
    """
    res = result(adata, key)
    if "qvalue" not in res:
        raise KeyError(f"adata.uns[{key!r}] holds no synergy tables; run tl.synergy, or "
                       "tl.predict_combination with combination=.")
    choices = ("mean_shift", "median_shift", "bliss_excess")
    if score not in choices:
        raise ValueError(f"score must be one of {choices}, got {score!r}.")
    table, q = res[score], res["qvalue"]
    values = table.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    fig, (ax,), created = panels(ax, 1, ncols=1, panel_size=(max(4.5, 0.32 * n_cols + 2.5),
                                                             max(3.0, 0.45 * n_rows + 1.8)))
    limit = vmax if vmax is not None else (float(np.nanmax(np.abs(values))) or 1.0)
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    rows, cols = np.nonzero(q.to_numpy(dtype=float) < alpha)
    ax.scatter(cols, rows, s=10, c="black", marker="o")
    ax.set_xticks(range(n_cols), table.columns, rotation=90, fontsize=8)
    ax.set_yticks(range(n_rows), table.index, fontsize=9)
    ax.set_xlabel("feature")
    label = ("Bliss excess\n(share of cells)" if score == "bliss_excess"
             else f"{score.replace('_', ' ')}\n(observed − predicted)")
    fig.colorbar(image, ax=ax, label=label, shrink=0.9)
    ax.set_title(f"dots: q < {alpha:g}" if len(rows) else f"no feature with q < {alpha:g}",
                 fontsize=9, loc="left")
    return finish(fig, show=show, save=save, name="synergy", tight=created)
