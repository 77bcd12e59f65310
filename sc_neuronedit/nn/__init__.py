"""Networks and their training loop (torch only, no AnnData)."""

from ._autoencoder import Autoencoder
from ._identity import InputLayer
from ._training import TrainingHistory, train_autoencoder

__all__ = ["Autoencoder", "InputLayer", "TrainingHistory", "train_autoencoder"]
