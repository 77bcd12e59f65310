from __future__ import annotations

import numpy as np

from ._common import result


def edit_curves(adata, key: str = "predicted_perturbation", *, n_neurons: int = 8):
    """The learned shift ``Δ_j(a)`` of the neurons that move most.

    Each panel shows one neuron: the shift (target − source quantile) against
    the source activation, with the range where the edited cells lie shaded by
    their share outside the source range.

    Parameters
    ----------
    adata
        AnnData holding ``uns[key]`` from a ``tl`` function.
    key
        The ``key_added`` of the run.
    n_neurons
        How many neurons to show, largest mean absolute shift first.
    """
    import matplotlib.pyplot as plt

    edit = result(adata, key)["edit"]
    src, tgt = np.asarray(edit["source_knots"]), np.asarray(edit["target_knots"])
    delta = tgt - src
    order = np.argsort(-np.abs(delta).mean(axis=0))[:n_neurons]
    ncols = min(4, len(order))
    nrows = int(np.ceil(len(order) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 2.4 * nrows), squeeze=False)
    for ax, j in zip(axes.flat, order):
        ax.plot(src[:, j], delta[:, j], color="C0")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"neuron {j} ({edit['outside_fraction'][j]:.0%} outside)", fontsize=9)
        ax.set_xlabel("source activation", fontsize=8)
        ax.set_ylabel("shift", fontsize=8)
    for ax in list(axes.flat)[len(order):]:
        ax.set_visible(False)
    fig.suptitle("Per-neuron edit: shift vs activation")
    fig.tight_layout()
    return fig
