from __future__ import annotations

import numpy as np

from ..metrics._distribution import _dense
from ._common import documented, finish, panels, result


def _tables(adata, key):
    res = result(adata, key)
    if "qvalue" not in res:
        raise KeyError(f"adata.uns[{key!r}] holds no synergy tables; run tl.synergy, or "
                       "tl.predict_combination with combination=.")
    return res


def _one_combination(res, key, combination):
    names = list(res["summary"].index)
    if combination is None:
        if len(names) > 1:
            raise ValueError(f"adata.uns[{key!r}] scores several combinations ({', '.join(names)}); "
                             "pass combination=.")
        return names[0]
    if combination not in names:
        raise ValueError(f"combination={combination!r} is not in adata.uns[{key!r}]; "
                         f"scored: {', '.join(names)}.")
    return combination


@documented
def synergy(adata, key: str = "synergy", *, rows: str | None = None, score: str = "mean_shift",
            statistic: str = "mean", combination: str | None = None, alpha: float = 0.05,
            vmax: float | None = None, ax=None, show: bool | None = None, save=None):
    """Heatmap of synergy, combination x feature or population x feature; dots mark q < ``alpha``.

    Parameters
    ----------
    adata
        AnnData holding the result of :func:`~sc_neuronedit.tl.synergy` or of
        :func:`~sc_neuronedit.tl.predict_combination` with a measured combination.
    key
        The ``key_added`` of the run.
    rows
        ``"combination"``: one row per combination, pooled over all cells
        (``score`` picks the table); ``"population"``: one row per population
        of one combination (``"all"`` = pooled), from the ``tests`` table
        (``statistic`` picks the statistic). Default ``"population"`` when the
        run had a ``population_key``.
    score
        With ``rows="combination"``: ``"mean_shift"``, ``"median_shift"`` or
        ``"bliss_excess"``.
    statistic
        With ``rows="population"``: ``"mean"``, ``"q10"``, ``"q50"`` or
        ``"q90"`` (observed minus predicted).
    combination
        With ``rows="population"``: which combination; needed when several were scored.
    alpha
        Cells whose q-value is below this get a dot (with ``rows="population"``,
        q over the combination's family: populations x features x statistics).
    vmax
        Colour scale limit (symmetric around 0); default the table's largest
        absolute value. Give the same value to compare several runs.
    {common_params}

    Returns
    -------
    The figure, or ``None`` with ``show=True``. Diverging colours centred on
    0: red = more than the no-interaction prediction.

    Examples
    --------
    >>> import sc_neuronedit as sne
    >>> adata = sne.datasets.bcrxl_combination(gamma=1.0)
    >>> sne.tl.synergy(adata, "condition", control="control",
    ...                combinations={"A+B": ("A", "B")}, population_key="population")
    >>> fig = sne.pl.synergy(adata)  # populations x features, mean shift
    >>> fig = sne.pl.synergy(adata, statistic="q90")
    >>> fig = sne.pl.synergy(adata, rows="combination", score="median_shift")
    """
    res = _tables(adata, key)
    if rows is None:
        rows = ("population" if res.get("params", {}).get("population_key") and "tests" in res
                else "combination")
    if rows == "combination":
        choices = ("mean_shift", "median_shift", "bliss_excess")
        if score not in choices:
            raise ValueError(f"score must be one of {choices}, got {score!r}.")
        table, q = res[score], res["qvalue"].to_numpy(dtype=float)
        label = ("Bliss excess\n(share of cells)" if score == "bliss_excess"
                 else f"{score.replace('_', ' ')}\n(observed − predicted)")
    elif rows == "population":
        if "tests" not in res:
            raise KeyError(f"adata.uns[{key!r}] has no tests table; rerun tl.synergy.")
        tests = res["tests"]
        choices = tuple(dict.fromkeys(tests["statistic"]))
        if statistic not in choices:
            raise ValueError(f"statistic must be one of {choices}, got {statistic!r}.")
        combination = _one_combination(res, key, combination)
        part = tests[(tests["combination"] == combination) & (tests["statistic"] == statistic)]
        order = list(dict.fromkeys(part["population"]))
        features = list(dict.fromkeys(part["feature"]))
        table = part.pivot(index="population", columns="feature", values="estimate").loc[
            order, features]
        q = part.pivot(index="population", columns="feature", values="qvalue").loc[
            order, features].to_numpy(dtype=float)
        label = f"{statistic} shift\n(observed − predicted)"
    else:
        raise ValueError(f"rows must be 'combination' or 'population', got {rows!r}.")
    values = table.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    fig, (ax,), created = panels(ax, 1, ncols=1, panel_size=(max(4.5, 0.32 * n_cols + 2.5),
                                                             max(3.0, 0.45 * n_rows + 1.8)))
    limit = vmax if vmax is not None else (float(np.nanmax(np.abs(values))) or 1.0)
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    hit_rows, hit_cols = np.nonzero(q < alpha)
    ax.scatter(hit_cols, hit_rows, s=10, c="black", marker="o")
    ax.set_xticks(range(n_cols), table.columns, rotation=90, fontsize=8)
    ax.set_yticks(range(n_rows), table.index, fontsize=9)
    ax.set_xlabel("feature")
    if rows == "population":
        ax.set_ylabel(f"population ({combination})")
    fig.colorbar(image, ax=ax, label=label, shrink=0.9)
    ax.set_title(f"dots: q < {alpha:g}" if len(hit_rows) else f"no feature with q < {alpha:g}",
                 fontsize=9, loc="left")
    return finish(fig, show=show, save=save, name="synergy", tight=created)


@documented
def synergy_distributions(adata, feature: str, key: str = "combination", *,
                          population: str = "all", bins: int = 40, ax=None,
                          show: bool | None = None, save=None):
    """Observed vs predicted combination of one feature in one population.

    Histograms (densities) of the measured combination cells and of the
    no-interaction prediction of :func:`~sc_neuronedit.tl.predict_combination`,
    with their 0.1, 0.5 and 0.9 quantiles marked: the statistics that
    :func:`~sc_neuronedit.tl.synergy` tests. With the run's tests table, the
    title gives the mean and quantile shifts and their q-values.

    Parameters
    ----------
    adata
        AnnData holding the result of :func:`~sc_neuronedit.tl.predict_combination`
        with a measured ``combination``.
    feature
        Var name.
    key
        The ``key_added`` of that run.
    population
        A value of the run's ``population_key`` column, or ``"all"`` for every cell.
    bins
        Histogram bins (shared by both).
    {common_params}

    {figure_returns}

    Examples
    --------
    >>> import sc_neuronedit as sne
    >>> adata = sne.datasets.bcrxl_combination(gamma=1.0)
    >>> sne.tl.predict_combination(adata, "condition", control="control", drug_a="A",
    ...                            drug_b="B", combination="A+B", population_key="population")
    >>> fig = sne.pl.synergy_distributions(adata, "pPlcg2", population="T")
    """
    res = result(adata, key)
    params = res["params"]
    combos = list(params.get("combinations", {}))
    if key not in adata.layers or len(combos) != 1 or "summary" not in res:
        raise KeyError(f"adata.uns[{key!r}] is not a predict_combination run with a measured "
                       "combination; run tl.predict_combination(..., combination=...).")
    if feature not in adata.var_names:
        raise KeyError(f"feature {feature!r} is not in adata.var_names.")
    j = adata.var_names.get_loc(feature)
    cond = adata.obs[params["condition_key"]].astype(str).to_numpy()
    edited = adata.obs[f"{key}_edited"].to_numpy(bool)
    observed = cond == combos[0]
    if population != "all":
        pop_key = params.get("population_key")
        if not pop_key:
            raise ValueError(f"population={population!r}, but the run in adata.uns[{key!r}] had "
                             "no population_key; use population='all'.")
        labels = adata.obs[pop_key].astype(str).to_numpy()
        if population not in set(labels[observed]):
            raise ValueError(f"population={population!r} has no {combos[0]} cells in "
                             f"adata.obs[{pop_key!r}].")
        edited, observed = edited & (labels == population), observed & (labels == population)
    X = adata.X if params.get("layer") is None else adata.layers[params["layer"]]
    sets = {"observed": _dense(X[np.flatnonzero(observed)][:, [j]]).ravel(),
            "predicted": _dense(adata.layers[key][np.flatnonzero(edited)][:, [j]]).ravel()}
    fig, (ax,), created = panels(ax, 1, ncols=1, panel_size=(5.0, 3.4))
    edges = np.histogram_bin_edges(np.concatenate(list(sets.values())), bins=bins)
    for (name, v), colour in zip(sets.items(), ("C1", "C0")):
        ax.hist(v, bins=edges, density=True, histtype="step", lw=1.6, color=colour,
                label=f"{name} ({len(v)} cells)")
        for qv in np.quantile(v, (0.1, 0.5, 0.9)):
            ax.axvline(qv, color=colour, ls=":", lw=1)
    ax.set_xlabel(feature)
    ax.set_ylabel("density")
    ax.legend(fontsize=8, frameon=False)
    title = f"{combos[0]}, population {population}"
    tests = res.get("tests")
    if tests is not None:
        part = tests[(tests["population"] == population) & (tests["feature"] == feature)]
        if len(part):
            shifts = [f"{r.statistic} {r.estimate:+.2f} "
                      + ("(not tested)" if np.isnan(r.qvalue) else f"(q {r.qvalue:.2g})")
                      for r in part.itertuples()]
            title += "".join(("\n" if i % 2 == 0 else ", ") + x for i, x in enumerate(shifts))
    ax.set_title(title + "\n(dotted: 0.1, 0.5, 0.9 quantiles)", fontsize=8, loc="left")
    return finish(fig, show=show, save=save, name="synergy_distributions", tight=created)
