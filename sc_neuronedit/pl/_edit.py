from __future__ import annotations

import numpy as np

from ._common import documented, finish, panels, result


@documented
def edit_curves(adata, key: str = "predicted_perturbation", *, n_neurons: int = 8,
                ax=None, show: bool | None = None, save=None):
    """The learned shift ``Δ_j(a)`` of the neurons that move most.

    Each panel shows one neuron: the shift (target − source quantile) against
    the source activation; the title gives the share of the edited cells'
    activations outside the source range, where the shift is held constant.

    Parameters
    ----------
    adata
        AnnData holding ``uns[key]`` from a ``tl`` function.
    key
        The ``key_added`` of the run.
    n_neurons
        How many neurons to show, largest mean absolute shift first.
    {common_params}

    {figure_returns}

    Examples
    --------
    {kang_result}
    >>> fig = sne.pl.edit_curves(adata, n_neurons=4)
    """
    edit = result(adata, key)["edit"]
    src, tgt = np.asarray(edit["source_knots"]), np.asarray(edit["target_knots"])
    delta = tgt - src
    order = np.argsort(-np.abs(delta).mean(axis=0))[:n_neurons]
    fig, axes, created = panels(ax, len(order), ncols=4, panel_size=(3.0, 2.4))
    for ax, j in zip(axes, order):
        ax.plot(src[:, j], delta[:, j], color="C0")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"neuron {j} ({edit['outside_fraction'][j]:.0%} outside)", fontsize=9)
        ax.set_xlabel("source activation", fontsize=8)
        ax.set_ylabel("shift", fontsize=8)
    if created:
        fig.suptitle("Per-neuron edit: shift vs activation")
    return finish(fig, show=show, save=save, name="edit_curves", tight=created)
