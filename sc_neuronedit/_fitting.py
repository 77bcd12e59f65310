"""Training a model's network on rows of data: seeded initialisation, the input
standardisation, and the training loop of :mod:`sc_neuronedit.nn`.

Array engine: rows come as a :class:`~sc_neuronedit._matrix.Rows`; nothing here knows
of AnnData or the model.
"""

from __future__ import annotations

import torch

from ._learning import INPUT
from ._matrix import Rows, is_backed
from ._warn import warn
from .nn import TrainingHistory, new_network, train_autoencoder
from .nn._training import standardization

#: Rows read at once when training from a backed file: minibatches are shuffled
#: within such chunks, and the chunks' order is shuffled (one sequential read each).
BACKED_CHUNK_ROWS = 16384


def fit(n_features: int, config: dict, rows: Rows, *, device: torch.device, max_epochs: int,
        batch_size: int, lr: float, weight_decay: float, validation_fraction: float,
        patience: int | None, random_state: int, progress: bool, mixed_precision: bool):
    """A network for ``config`` trained on ``rows`` (see
    :meth:`~sc_neuronedit.NeuronEditor.train`): ``(network, history, train_params)``."""
    if config["edit_layer"] == INPUT:  # the features are the edited layer: nothing to learn
        return (new_network(n_features, config).to(device), TrainingHistory(),
                {"n_cells": int(len(rows.idx)), "random_state": int(random_state)})
    if mixed_precision and device.type == "cpu":
        warn("mixed_precision=True on the CPU: bfloat16 matrix products are slow on CPUs "
             "without bfloat16 instructions (17x slower training on Kang on an AVX2 machine). "
             "Use it on a GPU, or leave it off.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        net = new_network(n_features, config)
    if config["standardize"]:
        net.set_standardization(*standardization(rows))
    history = train_autoencoder(
        net, rows, max_epochs=max_epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, validation_fraction=validation_fraction,
        patience=patience, device=device, random_state=random_state, progress=progress,
        chunk_rows=BACKED_CHUNK_ROWS if is_backed(rows.view.X) else None,
        mixed_precision=mixed_precision,
    )
    params = {
        "max_epochs": int(max_epochs), "batch_size": int(batch_size), "lr": float(lr),
        "weight_decay": float(weight_decay), "validation_fraction": float(validation_fraction),
        "patience": -1 if patience is None else int(patience), "random_state": int(random_state),
        "n_cells": int(len(rows.idx)), "mixed_precision": bool(mixed_precision),
    }
    return net, history, params
