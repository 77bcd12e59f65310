"""Networks and their training loop (torch only, no AnnData)."""

from ._autoencoder import Autoencoder
from ._identity import InputLayer
from ._training import TrainingHistory, train_autoencoder

__all__ = ["Autoencoder", "InputLayer", "TrainingHistory", "new_network", "train_autoencoder"]


def new_network(n_features: int, config: dict) -> Autoencoder | InputLayer:
    """An untrained network for a model's ``config`` (``hidden``, ``n_latent``,
    ``edit_layer``); ``edit_layer="input"`` has nothing to train."""
    if config["edit_layer"] == "input":
        return InputLayer(n_features)
    return Autoencoder(n_features, config["hidden"], config["n_latent"])
