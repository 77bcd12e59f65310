from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from ..metrics._distribution import _dense
from ._common import documented, finish, panels, result


def _groups(adata, key: str, observed: dict | None):
    """Rows of the control (edited), predicted and observed cells of a result."""
    res = result(adata, key)
    edited = adata.obs[f"{key}_edited"].to_numpy()
    if observed is None:
        p = res["params"]
        if "perturbed" not in p:
            raise ValueError(f"adata.uns[{key!r}] is not from tl.predict_perturbation; give "
                             "observed= (the real cells to compare with), e.g. "
                             "{'condition': 'stimulated', 'cell_type': 'CD4T'}.")
        observed = {p["condition_key"]: p["perturbed"], p["groupby"]: list(p["predict_for"])}
    from .._anndata import resolve_selection

    return edited, resolve_selection(adata, observed, name="observed")


def _feature_index(adata, genes: Sequence[str]) -> np.ndarray:
    idx = adata.var_names.get_indexer(list(genes))
    if (idx < 0).any():
        missing = [g for g, i in zip(genes, idx) if i < 0]
        raise KeyError(f"Not in adata.var_names: {missing}.")
    return idx


def _wilcoxon_up(real, ctrl, var_names, n: int) -> np.ndarray:
    """Column index of the ``n`` genes most up in ``real`` vs ``ctrl`` (Wilcoxon, as scGen)."""
    import anndata as ad
    import pandas as pd
    from scipy import sparse

    from ..metrics import top_degs

    stack = sparse.vstack if sparse.issparse(real) else np.vstack
    groups = ["observed"] * real.shape[0] + ["control"] * ctrl.shape[0]
    obs = pd.DataFrame({"g": groups}, index=[str(i) for i in range(len(groups))])
    both = ad.AnnData(stack([real, ctrl]), obs=obs, var=pd.DataFrame(index=var_names))
    with warnings.catch_warnings():  # scanpy's log fold changes (unused here) warn on negative values
        warnings.simplefilter("ignore", RuntimeWarning)
        degs = top_degs(both, "g", "observed", "control", n_genes=min(n, len(var_names)))
    return var_names.get_indexer(degs)


@documented
def reg_mean(adata, key: str = "predicted_perturbation", *, observed=None,
             degs: Sequence[str] | None = None, n_degs: int = 100, labels: int | Sequence[str] = 10,
             layer: str | None = None, ax=None, show: bool | None = None, save=None):
    """Per-gene means, predicted vs observed, with r² for all genes and for the DEGs.

    The plot users know from scGen's ``reg_mean_plot``: one dot per gene, the
    observed mean of the real perturbed cells on x, the predicted mean on y,
    with the least-squares line. Grey dots are the control cells' own means
    (the "no change" prediction), so the gain over doing nothing shows.

    Parameters
    ----------
    adata
        AnnData holding the result of :func:`~sc_neuronedit.tl.predict_perturbation`
        (or of another ``tl`` function, then give ``observed``).
    key
        The ``key_added`` of the run.
    observed
        Selection of the real perturbed cells to compare with; by default the
        perturbed cells of the run's ``predict_for`` groups.
    degs
        Genes for the second r²; by default the ``n_degs`` genes most
        up-regulated in the observed vs the control cells (Wilcoxon).
    n_degs
        Number of DEGs when ``degs`` is not given.
    labels
        How many DEGs to label (highest ranked first), or the genes to label.
    layer
        Layer of the observed and control values; default ``X``.
    {common_params}

    {figure_returns}

    Examples
    --------
    {kang_result}
    >>> fig = sne.pl.reg_mean(adata, labels=["ISG15", "IFI6", "IFIT1"], save="reg_mean.png")
    """
    from scipy import stats

    from ..metrics import r2_means

    edited, obs_mask = _groups(adata, key, observed)
    X = adata.X if layer is None else adata.layers[layer]
    pred, real, ctrl = adata.layers[key][edited], X[obs_mask], X[edited]
    deg_idx = (_feature_index(adata, degs) if degs is not None
               else _wilcoxon_up(real, ctrl, adata.var_names, n_degs))
    label_idx = (deg_idx[:labels] if isinstance(labels, (int, np.integer))
                 else _feature_index(adata, labels))
    m_pred, m_real, m_ctrl = (_dense(m.mean(axis=0)).ravel() for m in (pred, real, ctrl))

    fig, (ax,), created = panels(ax, 1, ncols=1, panel_size=(4.6, 4.4))
    ax.scatter(m_real, m_ctrl, s=5, c="lightgrey", lw=0,
               label=f"control, no change (r² {r2_means(ctrl, real):.2f})")
    ax.scatter(m_real, m_pred, s=5, c="C0", lw=0, label=f"predicted (r² {r2_means(pred, real):.2f})")
    ax.scatter(m_real[deg_idx], m_pred[deg_idx], s=9, c="C1", lw=0,
               label=f"predicted, top {len(deg_idx)} DEGs (r² {r2_means(pred, real, deg_idx):.2f})")
    top = max(m_real.max(), m_pred.max(), m_ctrl.max()) * 1.05
    low = min(0.0, m_real.min(), m_pred.min())
    ax.plot([low, top], [low, top], color="grey", lw=0.7, ls="--")
    fit = stats.linregress(m_real, m_pred)
    ax.plot([low, top], [fit.intercept + fit.slope * low, fit.intercept + fit.slope * top], color="C0", lw=1)
    what = "X" if layer is None else layer
    ax.set(xlabel=f"observed mean ({what})", ylabel=f"predicted mean ({what})",
           xlim=(low, top), ylim=(low, top))
    ax.set_title(_title(result(adata, key)["params"], observed), fontsize=10)
    ax.legend(frameon=False, fontsize=7, markerscale=2.5, loc="upper left")
    if created:
        fig.tight_layout()  # before placing labels, which works in display coordinates
    label_genes(ax, [adata.var_names[i] for i in label_idx], m_real[label_idx], m_pred[label_idx])
    return finish(fig, show=show, save=save, name="reg_mean")


def _title(params, observed) -> str:
    """Which cells are compared: the held-out group(s) and the condition, when the run says."""
    if observed is None and "predict_for" in params:
        groups = ", ".join(map(str, np.atleast_1d(params["predict_for"])))
        return f"{groups}: predicted vs observed {params['perturbed']}\nper-gene means"
    return "Per-gene means, predicted vs observed"


def label_genes(ax, names, x, y) -> None:
    """Label points by name without overlaps (adjustText), each tied to its point by a line."""
    from adjustText import adjust_text

    texts = [ax.text(xi, yi, str(name), fontsize=7) for name, xi, yi in zip(names, x, y)]
    if texts:
        adjust_text(texts, x=np.asarray(x, float), y=np.asarray(y, float), ax=ax,
                    arrowprops=dict(arrowstyle="-", color="dimgrey", lw=0.5))


@documented
def distributions(adata, genes: Sequence[str] | str, key: str = "predicted_perturbation", *,
                  observed=None, layer: str | None = None, ax=None, show: bool | None = None, save=None):
    """Violin plots of control, predicted and observed values per gene or marker.

    Parameters
    ----------
    adata
        AnnData holding the result of a ``tl`` function.
    genes
        Var names to show, one panel each.
    key
        The ``key_added`` of the run.
    observed
        Selection of the real perturbed cells; by default the perturbed cells
        of the run's ``predict_for`` groups.
    layer
        Layer of the control and observed values; default ``X``.
    {common_params}

    {figure_returns}

    Examples
    --------
    {kang_result}
    >>> fig = sne.pl.distributions(adata, ["ISG15", "IFIT1", "CXCL10"])
    """
    genes = [genes] if isinstance(genes, str) else list(genes)
    edited, obs_mask = _groups(adata, key, observed)
    idx = _feature_index(adata, genes)
    X = adata.X if layer is None else adata.layers[layer]
    sets = {
        "control": _dense(X[edited][:, idx]),
        "predicted": _dense(adata.layers[key][edited][:, idx]),
        "observed": _dense(X[obs_mask][:, idx]),
    }
    fig, axes, created = panels(ax, len(genes), ncols=6, panel_size=(2.2, 3.0))
    for j, (ax, g) in enumerate(zip(axes, genes)):
        parts = ax.violinplot([v[:, j] for v in sets.values()], showmedians=True)
        for body, color in zip(parts["bodies"], ("grey", "C0", "C1")):
            body.set_facecolor(color)
            body.set_alpha(0.6)
        # matplotlib draws whiskers and medians in C0, which vanishes on the blue body
        for line in ("cbars", "cmins", "cmaxes", "cmedians"):
            parts[line].set_color("black")
            parts[line].set_linewidth(0.8)
        ax.set_xticks([1, 2, 3], list(sets), rotation=45, fontsize=8)
        ax.set_title(g, fontsize=10)
    axes[0].set_ylabel("X" if layer is None else layer)
    return finish(fig, show=show, save=save, name="distributions", tight=created)
