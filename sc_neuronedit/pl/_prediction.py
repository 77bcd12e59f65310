from __future__ import annotations

from collections.abc import Sequence

from ..metrics._distribution import _dense
from ._common import new_axes, result


def _groups(adata, key: str, observed: dict | None):
    """Rows of the control (edited), predicted and observed cells of a result."""
    res = result(adata, key)
    edited = adata.obs[f"{key}_edited"].to_numpy()
    if observed is None:
        p = res["params"]
        observed = {p["condition_key"]: p["perturbed"], p["groupby"]: list(p["predict_for"])}
    from .._anndata import resolve_selection

    return edited, resolve_selection(adata, observed, name="observed")


def mean_scatter(adata, key: str = "predicted_perturbation", *, observed=None,
                 highlight: Sequence[str] | None = None, layer: str | None = None, ax=None):
    """Per-gene means of predicted vs observed perturbed cells, with r².

    Parameters
    ----------
    adata
        AnnData holding the result of :func:`~sc_neuronedit.tl.predict_perturbation`
        (or another ``tl`` function, then give ``observed``).
    key
        The ``key_added`` of the run.
    observed
        Selection of the real perturbed cells to compare with; by default the
        perturbed cells of ``predict_for``.
    highlight
        Genes to label (e.g. the top DEGs).
    layer
        Layer of the observed values; default ``X``.
    """
    from ..metrics import r2_means

    edited, obs_mask = _groups(adata, key, observed)
    X = adata.X if layer is None else adata.layers[layer]
    pred = _dense(adata.layers[key][edited])
    real = _dense(X[obs_mask])
    ctrl = _dense(X[edited])
    fig, ax = new_axes(ax, (4.2, 4.0))
    ax.scatter(real.mean(0), ctrl.mean(0), s=4, c="lightgrey", label="control (no change)")
    ax.scatter(real.mean(0), pred.mean(0), s=4, c="C0", label="predicted")
    if highlight is not None:
        idx = adata.var_names.get_indexer(list(highlight))
        for g, i in zip(highlight, idx):
            if i >= 0:
                ax.annotate(g, (real[:, i].mean(), pred[:, i].mean()), fontsize=7)
    lim = max(real.mean(0).max(), pred.mean(0).max()) * 1.05
    ax.plot([0, lim], [0, lim], color="grey", lw=0.8)
    ax.set(xlabel="observed mean", ylabel="predicted mean",
           title=f"r² = {r2_means(pred, real):.3f} (control: {r2_means(ctrl, real):.3f})")
    ax.legend(frameon=False, fontsize=8, markerscale=3)
    fig.tight_layout()
    return fig


def distributions(adata, genes: Sequence[str], key: str = "predicted_perturbation", *,
                  observed=None, layer: str | None = None):
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
        of ``predict_for``.
    layer
        Layer of the control and observed values; default ``X``.
    """
    import matplotlib.pyplot as plt

    edited, obs_mask = _groups(adata, key, observed)
    idx = adata.var_names.get_indexer(list(genes))
    if (idx < 0).any():
        missing = [g for g, i in zip(genes, idx) if i < 0]
        raise KeyError(f"Not in adata.var_names: {missing}.")
    X = adata.X if layer is None else adata.layers[layer]
    sets = {
        "control": _dense(X[edited][:, idx]),
        "predicted": _dense(adata.layers[key][edited][:, idx]),
        "observed": _dense(X[obs_mask][:, idx]),
    }
    fig, axes = plt.subplots(1, len(genes), figsize=(2.2 * len(genes), 3), squeeze=False)
    for j, (ax, g) in enumerate(zip(axes.flat, genes)):
        parts = ax.violinplot([v[:, j] for v in sets.values()], showmedians=True)
        for body, color in zip(parts["bodies"], ("grey", "C0", "C1")):
            body.set_facecolor(color)
        ax.set_xticks([1, 2, 3], list(sets), rotation=45, fontsize=8)
        ax.set_title(g, fontsize=10)
    fig.tight_layout()
    return fig
