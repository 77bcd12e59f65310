from __future__ import annotations

import numpy as np

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

    {figure_returns}

    Examples
    --------
    {kang_result}
    >>> fig = sne.pl.loss(adata, save="loss.png")
    """
    history = adata.history.to_dict() if hasattr(adata, "history") else result(adata, key)["history"]
    from matplotlib.ticker import MaxNLocator

    fig, (ax,), created = panels(ax, 1, ncols=1, panel_size=(4.5, 3.2))
    epochs = np.arange(1, len(history["train_loss"]) + 1)  # counted from 1, as the progress bar does
    ax.plot(epochs, history["train_loss"], label="training")
    if len(history["validation_loss"]):
        ax.plot(epochs[: len(history["validation_loss"])], history["validation_loss"], label="validation")
        ax.axvline(history["best_epoch"] + 1, color="grey", ls=":", lw=1, label="kept epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="MSE per entry (standardised)", yscale="log", title="Autoencoder training")
    ax.legend(frameon=False)
    return finish(fig, show=show, save=save, name="loss", tight=created)
