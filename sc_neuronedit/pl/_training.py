from __future__ import annotations

from ._common import documented, finish, panels, result


@documented
def loss(adata, key: str = "predicted_perturbation", *, ax=None, show: bool | None = None, save=None):
    """Training and validation loss per epoch of the autoencoder behind ``key``.

    Parameters
    ----------
    adata
        AnnData holding ``uns[key]`` from a ``tl`` function, or a
        :class:`~sc_neuronedit.NeuronEditor` (its ``history``).
    key
        The ``key_added`` of the run.
    {common_params}

    Returns
    -------
    The figure, or ``None`` with ``show=True``.

    Examples
    --------
    {kang_result}
    >>> fig = sne.pl.loss(adata, save="loss.png")
    """
    history = adata.history.to_dict() if hasattr(adata, "history") else result(adata, key)["history"]
    fig, (ax,), created = panels(ax, 1, ncols=1, panel_size=(4.5, 3.2))
    ax.plot(history["train_loss"], label="training")
    if len(history["validation_loss"]):
        ax.plot(history["validation_loss"], label="validation")
        ax.axvline(history["best_epoch"], color="grey", ls=":", lw=1, label="kept epoch")
    ax.set(xlabel="epoch", ylabel="MSE per entry (standardised)", yscale="log", title="Autoencoder training")
    ax.legend(frameon=False)
    return finish(fig, show=show, save=save, tight=created)
