from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

LEAK = 0.2


class Autoencoder(nn.Module):
    """MLP autoencoder with leaky-ReLU hidden layers and a linear output.

    The hidden layers are the encoder widths, the bottleneck, then the encoder
    widths mirrored. Hidden layer ``i`` (0-based, in that order) can be read
    with :meth:`encode` and decoded from with :meth:`decode`, so any of them can
    be the edited layer; the bottleneck is ``len(hidden)``.

    Parameters
    ----------
    n_input
        Number of input features.
    hidden
        Encoder widths before the bottleneck, e.g. ``(512, 256)``.
    n_latent
        Bottleneck width.
    """

    def __init__(self, n_input: int, hidden: Sequence[int] = (512, 256), n_latent: int = 64):
        super().__init__()
        hidden = [int(h) for h in hidden]
        if n_input < 1 or n_latent < 1 or any(h < 1 for h in hidden):
            raise ValueError("All layer widths must be positive integers.")
        self.n_input = int(n_input)
        self.hidden = tuple(hidden)
        self.n_latent = int(n_latent)
        widths = [self.n_input, *hidden, self.n_latent, *reversed(hidden), self.n_input]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.act = nn.LeakyReLU(LEAK)
        # Per-feature standardisation, part of the network so it is saved with it.
        self.register_buffer("center", torch.zeros(self.n_input))
        self.register_buffer("scale", torch.ones(self.n_input))

    def set_standardization(self, center: torch.Tensor, scale: torch.Tensor) -> None:
        """Inputs are standardised as ``(x - center) / scale`` and outputs mapped back."""
        self.center.copy_(center)
        self.scale.copy_(scale)

    @property
    def bottleneck(self) -> int:
        """Index of the bottleneck among the hidden layers."""
        return len(self.hidden)

    @property
    def n_hidden_layers(self) -> int:
        return len(self.layers) - 1

    def layer_width(self, layer: int) -> int:
        return self.layers[self._check_layer(layer)].out_features

    def _check_layer(self, layer: int) -> int:
        if not 0 <= layer < self.n_hidden_layers:
            raise ValueError(
                f"Layer {layer} does not exist: hidden layers are 0..{self.n_hidden_layers - 1} "
                f"(bottleneck = {self.bottleneck})."
            )
        return layer

    def encode(self, x: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """Activations of hidden ``layer`` (default: the bottleneck)."""
        layer = self.bottleneck if layer is None else self._check_layer(layer)
        h = (x - self.center) / self.scale
        for lin in self.layers[: layer + 1]:
            h = self.act(lin(h))
        return h

    def decode(self, h: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """Reconstruction from the activations of hidden ``layer``."""
        layer = self.bottleneck if layer is None else self._check_layer(layer)
        rest = self.layers[layer + 1 :]
        for lin in rest[:-1]:
            h = self.act(lin(h))
        return rest[-1](h) * self.scale + self.center

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
