"""Applying a learned edit: routing cells to their population's edit, predicting block by
block, and the edit's statistics over the cells it is applied to.

Array engine: cells come as :class:`~sc_neuronedit._matrix.Rows`, population labels
as arrays, the network as an argument.
"""

from __future__ import annotations

import numpy as np
import torch

from ._learning import INPUT, Edit
from ._matrix import Rows, read_rows
from ._passes import BATCH_SIZE
from ._predict import block_predictor
from ._threads import restored_threads
from ._warn import warn
from .nn._training import block_tensor

DECODE_FORMS = ("edited_residual", "residual", "plain")
__all__ = ["BATCH_SIZE", "DECODE_FORMS", "apply_edit", "check_decode", "check_edit", "predict",
           "routes", "statistics"]


def check_decode(decode: str) -> str:
    """``decode`` if it is a known form, else an error naming the forms."""
    if decode not in DECODE_FORMS:
        raise ValueError(f"decode must be one of {DECODE_FORMS}, got {decode!r}.")
    return decode


def check_edit(net, layer, edit: Edit, decode: str) -> str:
    """The decode form that applies (the input layer has nothing to decode), or an error
    when ``edit`` cannot be applied with ``decode`` to ``layer`` of ``net``."""
    check_decode(decode)
    if layer == INPUT:
        decode = "plain"  # the edited features are the prediction: nothing to decode
    if decode == "edited_residual" and edit.residual is None:
        raise ValueError("This edit has no residual part; learn it with residual=True or "
                         "use decode='residual'.")
    if edit.neurons.n_neurons != net.layer_width(layer):
        raise ValueError(
            f"The edit has {edit.neurons.n_neurons} neurons but layer {layer} has "
            f"{net.layer_width(layer)}; was it learned on another model?"
        )
    return decode


def routes(edit: Edit, labels: np.ndarray | None, *,
           warn_unseen: bool = True) -> tuple[np.ndarray | None, list[Edit]]:
    """Per cell (of population ``labels``), the position of its edit in the returned list."""
    if edit.populations is None:
        if labels is not None:
            raise ValueError("This edit was learned without populations; learn it with "
                             "populations= to edit within populations.")
        return None, [edit]
    if labels is None:
        raise ValueError("This edit was learned within populations: pass populations= with "
                         "the population of each cell to edit.")
    names, codes = np.unique(labels, return_inverse=True)
    names = [str(p) for p in names]
    unseen = [p for p in names if p not in edit.populations and p not in (edit.fallback or {})]
    if unseen and warn_unseen:
        counts = {p: int((labels == p).sum()) for p in unseen}
        warn("No source or target cells in population(s) "
             + ", ".join(f"{p!r} ({n} cells)" for p, n in counts.items())
             + "; they take the pooled edit.")
    return codes, [edit.for_population(p) for p in names]


def apply_edit(net, layer, cells: Rows, edit: Edit, labels: np.ndarray | None, decode: str, *,
               batch_size: int = BATCH_SIZE, out=None, with_statistics: bool = False):
    """``edit`` applied to ``cells`` (population ``labels`` per cell, or ``None``) and
    decoded (see :meth:`~sc_neuronedit.NeuronEditor.apply_edit`), into ``out`` or a new
    array. With ``with_statistics``, also :func:`statistics` on those cells, from the
    same reads: ``(values, statistics)``."""
    decode = check_edit(net, layer, edit, decode)
    shape = (len(cells.idx), cells.view.X.shape[1])
    if out is not None and tuple(getattr(out, "shape", ())) != shape:
        raise ValueError(f"out must have shape {shape} (cells x features), got "
                         f"{getattr(out, 'shape', None)}.")
    codes, edits = routes(edit, labels)
    # Filled block by block: the output is the only full-size array made, and
    # with ``out`` not even that.
    result = np.empty(shape, dtype=np.float32) if out is None else out
    z = predict(net, layer, cells, codes, edits, decode, result, batch_size=batch_size,
                encode=with_statistics)
    return (result, statistics(edit, z, codes, edits)) if with_statistics else result


def predict(net, layer, cells: Rows, codes, edits: list[Edit], decode: str, result, *,
            batch_size: int, encode: bool = False) -> torch.Tensor | None:
    """Rows of ``cells`` into ``result``, block by block, each read once; ``codes`` picks
    each cell's entry of ``edits`` (``None``: the only one). With ``encode``, also the cells'
    own activations of ``layer`` (from the same reads), for :func:`statistics`."""
    view, idx = cells.view, cells.idx
    predictors = [block_predictor(net, layer, e.neurons, e.residual, decode, view.cols)
                  for e in edits]
    direct = isinstance(result, np.ndarray) and result.dtype == np.float32
    block = None if direct else np.empty((min(batch_size, len(idx)), result.shape[1]), np.float32)
    activations = []
    # The CPU kernels (numba) can reset the OpenMP thread count that torch reads.
    with restored_threads(), torch.no_grad():
        for start in range(0, len(idx), batch_size):
            rows = idx[start : start + batch_size]
            full = result[start : start + len(rows)] if direct else block[: len(rows)]
            data = read_rows(view.X, rows)
            if encode:  # what encode_rows would compute, from this read
                x = data if view.cols is None else data[:, view.cols]
                activations.append(net.encode(block_tensor(x, net.center.device), layer))
            if codes is None:
                predictors[0](data, full)
            else:  # each population's cells through its own edit
                here = codes[start : start + len(rows)]
                for code in np.unique(here):
                    part = np.flatnonzero(here == code)
                    values = np.empty((len(part), result.shape[1]), dtype=np.float32)
                    predictors[code](data[part], values)
                    full[part] = values
            if not direct:
                result[start : start + len(rows)] = full
    if encode:
        return torch.cat(activations) if activations else torch.empty(0, net.layer_width(layer))
    return None


def statistics(edit: Edit, activations: torch.Tensor, codes, edits: list[Edit]) -> dict:
    """Knots, per-neuron shift summary and the share of ``activations`` (the cells the edit
    is applied to) outside their own edit's source range (see
    :meth:`~sc_neuronedit.NeuronEditor.edit_statistics`)."""
    neurons = edit.neurons
    stats = {k: v.cpu().numpy() for k, v in neurons.summary().items()}
    stats["source_knots"] = neurons.source_knots.cpu().numpy()
    stats["target_knots"] = neurons.target_knots.cpu().numpy()
    z = activations.to(neurons.source_knots.device)
    n = len(z)
    if codes is None:
        codes = np.zeros(n, dtype=int)
    outside = np.zeros(neurons.n_neurons)
    for code, own in enumerate(edits):
        part = torch.as_tensor(np.flatnonzero(codes == code))
        if len(part):
            outside += len(part) * own.neurons.outside_fraction(z[part]).cpu().numpy()
    stats["outside_fraction"] = outside / max(1, n)
    return stats
