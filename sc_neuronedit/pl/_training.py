from __future__ import annotations

from ._common import new_axes, result


def loss(adata, key: str = "predicted_perturbation", *, ax=None):
    """Training and validation loss per epoch of the autoencoder behind ``key``.

    Parameters
    ----------
    adata
        AnnData holding ``uns[key]`` from a ``tl`` function, or a
        :class:`~sc_neuronedit.NeuronEditor` (its ``history``).
    key
        The ``key_added`` of the run.
    ax
        Axes to draw into; a new figure if ``None``.
    """
    history = adata.history.to_dict() if hasattr(adata, "history") else result(adata, key)["history"]
    fig, ax = new_axes(ax, (4.5, 3.2))
    ax.plot(history["train_loss"], label="training")
    if len(history["validation_loss"]):
        ax.plot(history["validation_loss"], label="validation")
        ax.axvline(history["best_epoch"], color="grey", ls=":", lw=1, label="kept epoch")
    ax.set(xlabel="epoch", ylabel="MSE per entry (standardised)", yscale="log", title="Autoencoder training")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig
