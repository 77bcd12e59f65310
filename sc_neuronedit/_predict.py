"""One block of cells through encoder, edit and decoder: the body of
:meth:`~sc_neuronedit.NeuronEditor.apply_edit`.

Two implementations of the same arithmetic. :class:`TorchBlocks` runs the
network as trained, on any device (on a GPU, torch's ``searchsorted`` makes the
residual edit cheap). :class:`CpuBlocks` is the CPU fast path: the input
standardisation and output scaling are folded into the first and last layers,
a sparse block enters the first layer through its non-zeros only, and the
residual edit runs as one compiled pass (:mod:`sc_neuronedit._kernels`).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse

from . import _kernels
from ._edit import QuantileEdit
from ._matrix import dense
from ._residual import LevelResidualEdit
from .nn import Autoencoder

#: Up to this share of non-zeros, a sparse block enters the first layer sparse;
#: above it densifying and one dense matrix product is faster.
SPARSE_MAX_DENSITY = 0.25


class TorchBlocks:
    """Prediction of row blocks with the network's own passes, on its device.

    Parameters
    ----------
    net
        Trained autoencoder.
    layer
        The edited hidden layer.
    neurons
        The neuron edit.
    residual
        The per-feature residual edit (conditioned on the decoded level), or
        ``None`` unless ``decode="edited_residual"``.
    decode
        One of ``"edited_residual"``, ``"residual"``, ``"plain"``.
    cols
        Column indices the network sees (``None``: all); others keep their input values.
    """

    def __init__(self, net: Autoencoder, layer: int, neurons: QuantileEdit,
                 residual: LevelResidualEdit | None, decode: str, cols: np.ndarray | None):
        self.net, self.layer, self.decode, self.cols = net, layer, decode, cols
        self.device = net.center.device
        self.neurons = neurons.to(self.device)
        self.residual = None if residual is None else residual.to(self.device)

    @torch.no_grad()
    def __call__(self, block, out: np.ndarray) -> None:
        """Write the prediction of ``block`` (rows of the input, all columns) to ``out``."""
        out[:] = dense(block)
        x = out if self.cols is None else out[:, self.cols]
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        net, layer = self.net, self.layer
        z = net.encode(x, layer)
        edited = net.decode(self.neurons.apply(z), layer)
        if self.decode == "residual":
            edited += x - net.decode(z, layer)
        elif self.decode == "edited_residual":
            decoded = net.decode(z, layer)
            r = x - decoded
            shift = self.residual.shift(r, decoded, edited)  # the target bin needs decode(z') alone
            edited += r
            edited += shift
        self._write(out, edited.cpu().numpy())

    def _write(self, out: np.ndarray, values: np.ndarray) -> None:
        if self.cols is None:
            out[:] = values
        else:
            out[:, self.cols] = values


class CpuBlocks(TorchBlocks):
    """:class:`TorchBlocks` on the CPU, faster; equal up to float rounding.

    The first layer sees ``(x - center) / scale`` and the output is
    ``y * scale + center``; both are folded into the weights (in float64), so
    a block costs matrix products and nothing else full-size but the residual
    edit, which runs feature-major through :func:`_kernels.edited_residual`
    (one level bin) or :func:`_kernels.level_residual`.
    """

    def __init__(self, net: Autoencoder, layer: int, neurons: QuantileEdit,
                 residual: LevelResidualEdit | None, decode: str, cols: np.ndarray | None):
        super().__init__(net, layer, neurons, residual, decode, cols)
        first, last = net.layers[0], net.layers[-1]
        center, scale = net.center.double(), net.scale.double()
        w_in = first.weight.double() / scale
        self.w_in = w_in.T.float().contiguous()  # (features, width): rows per feature
        self.b_in = (first.bias.double() - w_in @ center).float()
        self.w_out = (last.weight.double() * scale[:, None]).float()
        self.b_out = (last.bias.double() * scale + center).float()
        self.neuron_tables = _tables(neurons)
        self.tables = None if residual is None else _residual_tables(residual)

    @torch.no_grad()
    def __call__(self, block, out: np.ndarray) -> None:
        _kernels.threads(torch.get_num_threads())
        x = block if self.cols is None else block[:, self.cols]
        # The output starts as the input: the columns the network does not see
        # keep it, and "residual" adds to it. The default form writes every
        # model column from its own feature-major buffer.
        filled = self.cols is not None or self.decode != "edited_residual"
        if filled:
            out[:] = dense(block)
        if not (sparse.issparse(x) and _density(x) <= SPARSE_MAX_DENSITY):
            # Densified once, for the first layer and the residual alike.
            x = (out if self.cols is None else out[:, self.cols]) if filled else dense(x)
        net = self.net
        with _stage("first layer"):
            h = self._first_layer(x)
        with _stage("encoder"):
            for lin in net.layers[1 : self.layer + 1]:
                h = lin(net.act(h))
            z = net.act(h)
        with _stage("neuron edit"):
            z_t = np.ascontiguousarray(z.numpy().T)
            z_edited = torch.from_numpy(_kernels.edit_columns(z_t, self.neuron_tables).T.copy())
        with _stage("decoder"):
            if self.decode == "plain":
                edited, hidden = self._hidden(z_edited), None
            else:  # one pass over both: fewer, larger products
                edited, hidden = self._hidden(torch.cat([z_edited, z])).split(len(z))
        if self.decode == "plain":
            with _stage("output layer"):
                self._write(out, torch.addmm(self.b_out, edited, self.w_out.T).numpy())
        elif self.decode == "residual":
            with _stage("output layer"):
                # x + decode(z') - decode(z): the output biases cancel, one product is left.
                change = ((edited - hidden) @ self.w_out.T).numpy()
                if self.cols is None:
                    out += change
                else:
                    out[:, self.cols] += change
        else:
            self._edited_residual(x, hidden, edited, out)

    def _first_layer(self, x) -> torch.Tensor:
        """``x`` is sparse (enters through its non-zeros) or already dense."""
        if sparse.issparse(x):
            return torch.from_numpy(_kernels.csr_linear(x.tocsr(), self.w_in.numpy(), self.b_in.numpy()))
        return torch.addmm(self.b_in, torch.from_numpy(np.asarray(x, dtype=np.float32)), self.w_in)

    def _hidden(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder up to its last hidden layer."""
        h = z
        for lin in self.net.layers[self.layer + 1 : -1]:
            h = self.net.act(lin(h))
        return h

    def _edited_residual(self, x, hidden, edited, out) -> None:
        # Feature-major throughout: the products write (features, cells) directly,
        # and the kernel reads each feature's values contiguously.
        with _stage("output layer"):
            bias = self.b_out[:, None]
            d_t = torch.addmm(bias, self.w_out, hidden.T).numpy()
            e_t = torch.addmm(bias, self.w_out, edited.T).numpy()
        with _stage("residual edit"):
            if sparse.issparse(x):
                x_t = x.T.toarray().astype(np.float32, copy=False)
            else:
                x_t = np.empty_like(d_t)
                _kernels.transpose_into(np.asarray(x, dtype=np.float32), x_t)
            if isinstance(self.tables, _kernels.LevelTables):
                _kernels.level_residual(x_t, d_t, e_t, self.tables)
            else:
                _kernels.edited_residual(x_t, d_t, e_t, self.tables)
        with _stage("write"):
            if self.cols is None:
                _kernels.transpose_into(e_t, out)
            else:
                values = np.empty((e_t.shape[1], e_t.shape[0]), dtype=np.float32)
                _kernels.transpose_into(e_t, values)
                out[:, self.cols] = values


def _stage(name: str):
    """A labelled range in a torch.profiler trace; ``benchmarks/throughput.py`` reports them."""
    return torch.profiler.record_function(f"sne: {name}")


def _tables(edit: QuantileEdit) -> _kernels.KnotTables:
    source = edit.source_knots.cpu()
    return _kernels.knot_tables(source.numpy(), (edit.target_knots.cpu() - source).numpy())


def _residual_tables(edit: LevelResidualEdit):
    """One bin: the pooled edit's tables, the kernel of the unconditioned edit."""
    if edit.n_bins == 1:
        return _tables(edit.pooled_edit())
    return _kernels.level_tables(*(getattr(edit, f).cpu().numpy() for f in (
        "source_edges", "target_edges", "source_knots", "target_knots")))


def _density(block) -> float:
    return block.nnz / max(1, block.shape[0] * block.shape[1])


def block_predictor(net: Autoencoder, layer: int, neurons: QuantileEdit,
                    residual: LevelResidualEdit | None, decode: str, cols: np.ndarray | None):
    """The fastest implementation for the network's device."""
    # The CPU path folds the autoencoder's first and last layers; the input layer has none.
    fast = net.center.device.type == "cpu" and isinstance(net, Autoencoder)
    kind = CpuBlocks if fast else TorchBlocks
    return kind(net, layer, neurons, residual if decode == "edited_residual" else None, decode, cols)
