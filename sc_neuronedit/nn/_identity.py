from __future__ import annotations

import torch
from torch import nn


class InputLayer(nn.Module):
    """The input features as the edited layer: encoding and decoding are the identity.

    Stands in for :class:`~sc_neuronedit.nn.Autoencoder` when
    ``edit_layer="input"``: the quantile edit then acts on each feature itself
    (a per-feature quantile map), and there is nothing to train. On small
    marker panels that is often the better basis; on sparse expression the
    autoencoder's is.

    Parameters
    ----------
    n_input
        Number of input features.
    """

    def __init__(self, n_input: int):
        super().__init__()
        if n_input < 1:
            raise ValueError("n_input must be a positive integer.")
        self.n_input = int(n_input)
        # A buffer, so that .to(device) moves it and the device can be read off it.
        self.register_buffer("center", torch.zeros(self.n_input))

    def layer_width(self, layer=None) -> int:
        return self.n_input

    def encode(self, x: torch.Tensor, layer=None) -> torch.Tensor:
        return x

    def decode(self, h: torch.Tensor, layer=None) -> torch.Tensor:
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
