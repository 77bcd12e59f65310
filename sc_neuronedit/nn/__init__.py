"""Networks and their training loop (torch only, no AnnData)."""

from ._autoencoder import Autoencoder
from ._training import TrainingHistory, train_autoencoder

__all__ = ["Autoencoder", "TrainingHistory", "train_autoencoder"]
