"""The user-facing model: an autoencoder over an AnnData (or array) plus edits.

AnnData in, arrays out. The network lives in :mod:`sc_neuronedit.nn`, the
edit math in :mod:`sc_neuronedit._edit`; this class wires them to data.
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import sparse

from . import _anndata as _ad
from ._edit import QuantileEdit, fit_quantile_edit
from ._matrix import contiguous, in_memory, is_backed, take_rows
from ._predict import block_predictor
from .nn import Autoencoder, TrainingHistory, train_autoencoder
from .nn._distributed import all_reduce_sum, gather_rows, shard
from .nn._training import iter_batches

DECODE_FORMS = ("edited_residual", "residual", "plain")
#: Cells per side used for the per-feature quantiles of the residual edit.
RESIDUAL_MAX_CELLS = 10_000
_CONFIG = "config.json"
_WEIGHTS = "weights.pt"
_FORMAT_VERSION = 1


@dataclass
class Edit:
    """What :meth:`NeuronEditor.learn_edit` learns.

    Parameters
    ----------
    neurons
        The quantile edit of the edited layer's neurons.
    residual
        A quantile edit per feature of the reconstruction residual
        ``x - decode(encode(x))``, from source to target cells (used by
        ``decode="edited_residual"``), or ``None``.

    Examples
    --------
    >>> import torch
    >>> import sc_neuronedit as sne
    >>> gen = torch.Generator().manual_seed(0)
    >>> source, target = torch.randn(100, 8, generator=gen), torch.randn(100, 8, generator=gen) + 1
    >>> edit = sne.Edit(sne.fit_quantile_edit(source, target))
    >>> edit.residual is None  # apply with decode="residual" or "plain"
    True
    """

    neurons: QuantileEdit
    residual: QuantileEdit | None = None


#: Rows read at once when training from a backed file: minibatches are shuffled
#: within such chunks, and the chunks' order is shuffled (one sequential read each).
BACKED_CHUNK_ROWS = 16384

def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class _Columns:
    """Row access to a subset of columns of a dense, sparse or backed matrix.

    ``cols`` is a boolean mask or integer indices in the model's feature order.
    Slicing rows first keeps a sparse or backed matrix from being expanded.
    """

    def __init__(self, X, cols: np.ndarray | None):
        if cols is not None and cols.dtype == bool:
            cols = np.flatnonzero(cols)
        self.X, self.cols = X, cols
        n_cols = X.shape[1] if cols is None else len(cols)
        self.shape = (X.shape[0], n_cols)

    def __getitem__(self, idx):
        block = in_memory(self.X[contiguous(idx)])
        return block if self.cols is None else block[:, self.cols]


def _array_mask(mask_var, n_features: int) -> np.ndarray:
    """``mask_var`` for array input: a boolean mask with one entry per column."""
    mask = np.asarray(mask_var)
    if mask.dtype != bool or mask.shape != (n_features,):
        raise ValueError(f"With array input, mask_var must be a boolean mask of {n_features} entries "
                         f"(one per column), got {mask.dtype} of shape {mask.shape}; var names "
                         "and .var columns need AnnData input.")
    if not mask.any():
        raise ValueError("mask_var selects no features.")
    return mask


class NeuronEditor:
    """Autoencoder-based neuron editing on an AnnData or a cells x features array.

    Parameters
    ----------
    data
        :class:`~anndata.AnnData` (dense, CSR or backed ``X``/layer) or a
        cells x features array (NumPy, SciPy sparse or torch).
    layer
        Layer of ``data`` to model instead of ``.X`` (AnnData only).
    mask_var
        Features the autoencoder sees: a boolean ``.var`` column name, a boolean
        mask or a list of var names. Other features are passed through unchanged.
    hidden
        Encoder widths before the bottleneck; the decoder mirrors them.
    n_latent
        Bottleneck width.
    edit_layer
        Hidden layer to edit, counted over encoder, bottleneck and decoder hidden
        layers from 0; ``None`` is the bottleneck.
    standardize
        Standardise each feature (centre, divide by its standard deviation on
        the training cells, floored at :data:`MIN_SCALE`) inside the network,
        so the loss weighs rare and abundant features alike (default). On
        log-normalised counts the unscaled loss is dominated by abundant
        genes, and genes that switch on under a perturbation, rare in control
        cells, are reconstructed poorly.

    Examples
    --------
    Predict stimulated CD14+ monocytes from control ones on the Kang PBMCs,
    without training on or learning from any stimulated monocyte:

    >>> import sc_neuronedit as sne
    >>> adata = sne.datasets.kang_pbmc()
    >>> mono = (adata.obs["cell_type"] == "CD14+Mono").to_numpy()
    >>> stim = (adata.obs["condition"] == "stimulated").to_numpy()
    >>> model = sne.NeuronEditor(adata).train(cells=~(mono & stim), random_state=0, progress=False)
    >>> edit = model.learn_edit(~mono & ~stim, ~mono & stim, groupby="cell_type")
    >>> X_pred = model.apply_edit(mono & ~stim, edit)
    >>> X_pred.shape
    (238, 6998)

    On a plain array, give cells as boolean masks (or as matrices):

    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(300, 20)).astype("float32")
    >>> treated = np.arange(300) >= 150
    >>> X[treated, :5] += 2.0
    >>> model = sne.NeuronEditor(X, hidden=(32,), n_latent=8).train(max_epochs=5, progress=False)
    >>> X_pred = model.apply_edit(~treated, model.learn_edit(~treated, treated))
    """

    #: The forms ``apply_edit(decode=...)`` accepts, the default first.
    decode_forms = DECODE_FORMS

    def __init__(
        self,
        data,
        *,
        layer: str | None = None,
        mask_var=None,
        hidden: Sequence[int] = (512, 256),
        n_latent: int = 64,
        edit_layer: int | None = None,
        standardize: bool = True,
    ):
        self.adata = data if _ad.is_anndata(data) else None
        if self.adata is not None:
            X = _ad.get_matrix(data, layer)
            self._feature_mask = _ad.resolve_mask_var(data, mask_var)
            names = np.asarray(data.var_names)
            self.feature_names = names if self._feature_mask is None else names[self._feature_mask]
        else:
            if layer is not None:
                raise ValueError("layer= only applies to AnnData input.")
            X = _as_matrix(data)
            self._feature_mask = None if mask_var is None else _array_mask(mask_var, X.shape[1])
            self.feature_names = None
        self.layer = layer
        self._X = X
        self.n_features = X.shape[1] if self._feature_mask is None else int(self._feature_mask.sum())
        # The data's columns in the model's feature order (load() may reorder them).
        self._columns = None if self._feature_mask is None else np.flatnonzero(self._feature_mask)
        self.config = {
            "hidden": [int(h) for h in hidden],
            "n_latent": int(n_latent),
            "edit_layer": None if edit_layer is None else int(edit_layer),
            "standardize": bool(standardize),
        }
        probe = Autoencoder(self.n_features, hidden, n_latent)  # validates widths and layer
        self.edit_layer = probe.bottleneck if edit_layer is None else probe._check_layer(edit_layer)
        self.network: Autoencoder | None = None
        self.history: TrainingHistory | None = None
        self.train_params: dict = {}
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------ data
    def _view(self, X=None) -> _Columns:
        return _Columns(self._X if X is None else X, self._columns)

    def _cells(self, cells, *, name: str = "cells") -> tuple[_Columns, np.ndarray]:
        """Matrix view and row indices for a selection, a mask or a data matrix."""
        if cells is None:
            return self._view(), np.arange(self._X.shape[0])
        if isinstance(cells, torch.Tensor):
            cells = cells.detach().cpu().numpy()
        if sparse.issparse(cells) or (isinstance(cells, np.ndarray) and cells.ndim == 2):
            width = cells.shape[1]
            if width == self.n_features:
                view = _Columns(cells, None)
            elif self._feature_mask is not None and width == len(self._feature_mask):
                view = self._view(cells)
            else:
                raise ValueError(
                    f"{name}: a data matrix must have {self.n_features} columns (the model's "
                    f"features), got {width}."
                )
            return view, np.arange(cells.shape[0])
        if self.adata is None:
            mask, n = np.asarray(cells), self._X.shape[0]
            if mask.ndim == 1 and np.issubdtype(mask.dtype, np.integer):
                if mask.size and (mask.min() < -n or mask.max() >= n):
                    raise IndexError(f"{name}: integer index out of range for {n} rows.")
                idx, mask = mask, np.zeros(n, dtype=bool)
                mask[idx] = True  # as with AnnData: rows in order, each once
            if mask.dtype != bool or mask.shape != (n,):
                raise TypeError(
                    f"{name}: without AnnData, give a boolean mask over the {n} rows, "
                    "integer row indices or a cells x features matrix."
                )
        else:
            mask = _ad.resolve_selection(self.adata, cells, name=name)
        return self._view(), np.flatnonzero(mask)

    # -------------------------------------------------------------- training
    def train(
        self,
        *,
        max_epochs: int = 30,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        validation_fraction: float = 0.1,
        patience: int | None = 10,
        cells=None,
        device: str | torch.device = "auto",
        random_state: int = 0,
        progress: bool = True,
        mixed_precision: bool = False,
    ) -> NeuronEditor:
        """Train the autoencoder to reconstruct the cells (MSE, Adam).

        Parameters
        ----------
        max_epochs
            Passes over the training cells; the learning rate anneals (cosine)
            over exactly this many, so it is also the schedule's length. With
            standardised input the validation loss bottoms out after 10-20
            epochs on ~2,000 cells, so 30 with early stopping is enough there;
            larger data sets learn more per epoch.
        batch_size, lr, weight_decay
            Minibatch size, Adam's initial learning rate and weight decay.
        validation_fraction, patience
            Held-out share of cells for early stopping and how many epochs
            without improvement to wait; the best epoch's weights are kept.
        cells
            Cells to train on (selection, mask or matrix); default all. The
            method trains on every cell involved: source, target and the cells
            to be edited, but not the real counterpart of a prediction you want
            to evaluate (the ``tl`` functions leave it out for you).
        device
            ``"auto"`` uses a GPU when present.
        random_state
            Seed for initialisation, the validation split and minibatch order:
            the same seed, input type and thread count give identical weights.
        progress
            Show a progress bar.
        mixed_precision
            Run the forward and backward passes in bfloat16 (``torch.autocast``);
            weights, optimiser state and the loss stay float32. Pays on GPUs with
            bfloat16 matrix units (A100, H100); on CPUs without bfloat16
            instructions it is much slower (a warning says so). Editing and
            prediction always run in float32.

        Returns
        -------
        The model itself, trained; ``history`` holds the loss curves and
        ``train_params`` the settings.

        Examples
        --------
        >>> import numpy as np
        >>> import sc_neuronedit as sne
        >>> X = np.random.default_rng(0).normal(size=(300, 20)).astype("float32")
        >>> model = sne.NeuronEditor(X, hidden=(32,), n_latent=8)
        >>> model = model.train(max_epochs=5, random_state=0, progress=False)
        >>> model.train_params["n_cells"]
        300
        """
        view, idx = self._cells(cells, name="cells")
        rows = _Rows(view, idx)
        _ad.check_finite(rows, what="The training matrix")
        self.device = resolve_device(device)
        if mixed_precision and self.device.type == "cpu":
            warnings.warn(
                "mixed_precision=True on the CPU: bfloat16 matrix products are slow on CPUs "
                "without bfloat16 instructions (17x slower training on Kang on an AVX2 machine). "
                "Use it on a GPU, or leave it off.", UserWarning, stacklevel=2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_state)
            net = Autoencoder(self.n_features, self.config["hidden"], self.config["n_latent"])
        if self.config["standardize"]:
            net.set_standardization(*_standardization(rows))
        self.history = train_autoencoder(
            net, rows, max_epochs=max_epochs, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, validation_fraction=validation_fraction,
            patience=patience, device=self.device, random_state=random_state, progress=progress,
            chunk_rows=BACKED_CHUNK_ROWS if is_backed(view.X) else None,
            mixed_precision=mixed_precision,
        )
        self.network = net
        self.train_params = {
            "max_epochs": int(max_epochs), "batch_size": int(batch_size), "lr": float(lr),
            "weight_decay": float(weight_decay), "validation_fraction": float(validation_fraction),
            "patience": -1 if patience is None else int(patience), "random_state": int(random_state),
            "n_cells": int(len(idx)), "mixed_precision": bool(mixed_precision),
        }
        return self

    def _require_trained(self) -> Autoencoder:
        if self.network is None:
            raise RuntimeError("The autoencoder is not trained yet; call .train() first.")
        return self.network

    # ----------------------------------------------------------- inference
    @torch.no_grad()
    def _encode_rows(self, view, idx, batch_size: int = 1024) -> torch.Tensor:
        net = self._require_trained()
        out = [net.encode(xb, self.edit_layer)
               for xb in iter_batches(view, shard(idx), batch_size, self.device)]
        width = net.layer_width(self.edit_layer)
        local = torch.cat(out) if out else torch.empty(0, width, device=self.device)
        return gather_rows(local)  # every rank's cells: exact quantiles in a distributed run

    def encode(self, cells=None) -> np.ndarray:
        """Activations of the edited layer, cells x neurons.

        Parameters
        ----------
        cells
            Cells to encode (selection, mask or matrix); default all.

        Returns
        -------
        ``(n_cells, n_neurons)`` float32 array.

        Examples
        --------
        >>> import numpy as np
        >>> import sc_neuronedit as sne
        >>> X = np.random.default_rng(0).normal(size=(300, 20)).astype("float32")
        >>> treated = np.arange(300) >= 150
        >>> X[treated, :5] += 2.0  # the treatment raises features 0-4
        >>> model = sne.NeuronEditor(X, hidden=(32,), n_latent=8).train(max_epochs=5, progress=False)
        >>> model.encode().shape
        (300, 8)
        >>> model.encode(treated).shape
        (150, 8)
        """
        view, idx = self._cells(cells)
        return self._encode_rows(view, idx).cpu().numpy()

    @torch.no_grad()
    def decode(self, activations) -> np.ndarray:
        """Reconstruct the model's features from edited-layer activations.

        Parameters
        ----------
        activations
            ``(n_cells, n_neurons)`` activations of the edited layer, e.g. from
            :meth:`encode`, possibly edited.

        Returns
        -------
        ``(n_cells, n_features)`` float32 array of the features the
        autoencoder sees (only those in ``mask_var``).

        Examples
        --------
        >>> import numpy as np
        >>> import sc_neuronedit as sne
        >>> X = np.random.default_rng(0).normal(size=(300, 20)).astype("float32")
        >>> treated = np.arange(300) >= 150
        >>> X[treated, :5] += 2.0  # the treatment raises features 0-4
        >>> model = sne.NeuronEditor(X, hidden=(32,), n_latent=8).train(max_epochs=5, progress=False)
        >>> model.decode(model.encode(treated)).shape
        (150, 20)
        """
        net = self._require_trained()
        z = torch.as_tensor(np.asarray(activations, dtype=np.float32), device=self.device)
        return net.decode(z, self.edit_layer).cpu().numpy()

    def learn_edit(
        self, source, target, *, n_quantiles: int = 100, groupby=None, residual: bool = True,
        random_state: int = 0,
    ) -> Edit:
        """Learn the per-neuron quantile edit from ``source`` to ``target`` cells.

        Parameters
        ----------
        source, target
            Cells as a selection ``{obs_key: value(s)}``, a boolean mask,
            integer row indices or a cells x features matrix.
        n_quantiles
            Knots per neuron.
        groupby
            ``.obs`` column (or per-cell labels) of groups such as cell types.
            Each group then weighs the same in the source and in the target
            quantiles, so a change of composition is not learned as the effect.
        residual
            Also learn the per-feature edit of the reconstruction residual that
            ``decode="edited_residual"`` needs (on at most
            :data:`RESIDUAL_MAX_CELLS` cells per side, drawn with ``random_state``).
        random_state
            Seed for drawing those cells.

        Returns
        -------
        :class:`Edit`, to pass to :meth:`apply_edit`.

        Examples
        --------
        >>> import numpy as np
        >>> import sc_neuronedit as sne
        >>> X = np.random.default_rng(0).normal(size=(300, 20)).astype("float32")
        >>> treated = np.arange(300) >= 150
        >>> X[treated, :5] += 2.0  # the treatment raises features 0-4
        >>> model = sne.NeuronEditor(X, hidden=(32,), n_latent=8).train(max_epochs=5, progress=False)
        >>> edit = model.learn_edit(~treated, treated)
        >>> edit.neurons.n_neurons, edit.residual.n_neurons
        (8, 20)
        """
        s_view, s_idx = self._cells(source, name="source")
        t_view, t_idx = self._cells(target, name="target")
        s_w = t_w = None
        if groupby is not None:
            if self.adata is None or s_view.X is not self._X or t_view.X is not self._X:
                raise ValueError("groupby= needs source and target given as cells of the AnnData.")
            groups = _ad.resolve_groups(self.adata, groupby)
            s_w = _ad.group_weights(groups[s_idx])
            t_w = _ad.group_weights(groups[t_idx])
        def weight(w, rows=slice(None)):
            return None if w is None else torch.as_tensor(w[rows], dtype=torch.float32)

        neurons = fit_quantile_edit(
            self._encode_rows(s_view, s_idx), self._encode_rows(t_view, t_idx),
            n_quantiles=n_quantiles, source_weights=weight(s_w), target_weights=weight(t_w),
        )
        if not residual:
            return Edit(neurons)
        rng = np.random.default_rng(random_state)
        def pick(n):
            if n <= RESIDUAL_MAX_CELLS:
                return np.arange(n)
            return np.sort(rng.choice(n, RESIDUAL_MAX_CELLS, replace=False))

        s_pick, t_pick = pick(len(s_idx)), pick(len(t_idx))
        return Edit(neurons, fit_quantile_edit(
            self._residual_rows(s_view, s_idx[s_pick]), self._residual_rows(t_view, t_idx[t_pick]),
            n_quantiles=n_quantiles, source_weights=weight(s_w, s_pick),
            target_weights=weight(t_w, t_pick),
        ))

    @torch.no_grad()
    def _residual_rows(self, view, idx, batch_size: int = 1024) -> torch.Tensor:
        net = self._require_trained()
        out = [xb - net(xb) for xb in iter_batches(view, shard(idx), batch_size, self.device)]
        local = torch.cat(out) if out else torch.empty(0, net.n_input, device=self.device)
        return gather_rows(local).cpu()

    @torch.no_grad()
    def apply_edit(
        self, cells, edit: Edit, *, decode: str = "edited_residual", batch_size: int = 1024,
        out=None,
    ):
        """Edit the cells' activations and decode them.

        Parameters
        ----------
        cells
            Cells to transform (selection, mask or matrix).
        edit
            From :meth:`learn_edit`.
        decode
            How the edited activations ``z'`` become values, with ``z`` the
            cell's own activations and ``r = x - decode(z)`` its reconstruction
            residual (what the autoencoder cannot represent: noise, dropout,
            fine detail):

            ``"edited_residual"`` (default)
                ``decode(z') + edit_r(r)``: the residual is edited too, per
                feature, by the quantile edit learned from the source to the
                target residuals. It carries a change of noise (e.g. genes that
                switch on heterogeneously) that no decoder of a smooth latent
                space can produce.
            ``"residual"``
                ``x + decode(z') - decode(z)``: the decoder's change added to
                the cell's own values; reconstruction error cancels.
            ``"plain"``
                ``decode(z')``, as in the paper: smoother than real cells.

            The default was chosen by an inner leave-one-type-out over training
            cell types only (``benchmarks/kang_select_decode.py``), never by
            the held-out type's perturbed cells.
        batch_size
            Cells per forward pass; only memory use depends on it.
        out
            Where to write the result instead of a new array: anything of shape
            cells x features that takes ``out[i:j] = block``, such as a
            :class:`numpy.memmap` or an h5py or zarr dataset. It is written one
            block of ``batch_size`` cells at a time, so a prediction larger than
            memory goes straight to disk.

        Returns
        -------
        Cells x features array (``out`` when given). With ``mask_var``,
        features outside the mask keep their input values.

        Examples
        --------
        >>> import numpy as np
        >>> import sc_neuronedit as sne
        >>> X = np.random.default_rng(0).normal(size=(300, 20)).astype("float32")
        >>> treated = np.arange(300) >= 150
        >>> X[treated, :5] += 2.0  # the treatment raises features 0-4
        >>> model = sne.NeuronEditor(X, hidden=(32,), n_latent=8).train(max_epochs=5, progress=False)
        >>> edit = model.learn_edit(~treated, treated)
        >>> X_pred = model.apply_edit(~treated, edit)  # the control cells, treated
        >>> round(float(X_pred[:, :5].mean()), 1), round(float(X_pred[:, 5:].mean()), 1)
        (2.0, 0.0)
        """
        if decode not in DECODE_FORMS:
            raise ValueError(f"decode must be one of {DECODE_FORMS}, got {decode!r}.")
        if decode == "edited_residual" and edit.residual is None:
            raise ValueError("This edit has no residual part; learn it with residual=True or "
                             "use decode='residual'.")
        net = self._require_trained()
        if edit.neurons.n_neurons != net.layer_width(self.edit_layer):
            raise ValueError(
                f"The edit has {edit.neurons.n_neurons} neurons but layer {self.edit_layer} has "
                f"{net.layer_width(self.edit_layer)}; was it learned on another model?"
            )
        view, idx = self._cells(cells)
        shape = (len(idx), view.X.shape[1])
        if out is not None and tuple(getattr(out, "shape", ())) != shape:
            raise ValueError(f"out must have shape {shape} (cells x features), got "
                             f"{getattr(out, 'shape', None)}.")
        predict = block_predictor(net, self.edit_layer, edit.neurons, edit.residual, decode, view.cols)
        # Filled block by block: the output is the only full-size array made, and
        # with ``out`` not even that.
        result = np.empty(shape, dtype=np.float32) if out is None else out
        direct = isinstance(result, np.ndarray) and result.dtype == np.float32
        block = None if direct else np.empty((min(batch_size, len(idx)), shape[1]), np.float32)
        for start in range(0, len(idx), batch_size):
            rows = idx[start : start + batch_size]
            full = result[start : start + len(rows)] if direct else block[: len(rows)]
            predict(in_memory(view.X[contiguous(rows)]), full)
            if not direct:
                result[start : start + len(rows)] = full
        return result

    def edit_statistics(self, cells, edit: Edit) -> dict[str, np.ndarray]:
        """Knots, per-neuron shift summary and the share of ``cells`` outside the source range.

        Parameters
        ----------
        cells
            Cells the edit is (to be) applied to (selection, mask or matrix).
        edit
            From :meth:`learn_edit`.

        Returns
        -------
        Dict of arrays: ``source_knots`` and ``target_knots``
        (``n_quantiles x n_neurons``), and per neuron the ``mean_shift``,
        ``min_shift`` and ``max_shift`` over the knots, the source range
        ``source_lower`` to ``source_upper``, and the ``outside_fraction`` of
        the cells' activations outside it (where the edit extrapolates).

        Examples
        --------
        >>> import numpy as np
        >>> import sc_neuronedit as sne
        >>> X = np.random.default_rng(0).normal(size=(300, 20)).astype("float32")
        >>> treated = np.arange(300) >= 150
        >>> X[treated, :5] += 2.0  # the treatment raises features 0-4
        >>> model = sne.NeuronEditor(X, hidden=(32,), n_latent=8).train(max_epochs=5, progress=False)
        >>> stats = model.edit_statistics(~treated, edit=model.learn_edit(~treated, treated))
        >>> stats["outside_fraction"].shape
        (8,)
        """
        view, idx = self._cells(cells)
        neurons = edit.neurons
        stats = {k: v.cpu().numpy() for k, v in neurons.summary().items()}
        stats["source_knots"] = neurons.source_knots.cpu().numpy()
        stats["target_knots"] = neurons.target_knots.cpu().numpy()
        stats["outside_fraction"] = neurons.outside_fraction(
            self._encode_rows(view, idx).to(neurons.source_knots.device)
        ).cpu().numpy()
        return stats

    # ------------------------------------------------------------ save/load
    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Save to a folder: ``weights.pt`` (a plain state dict of tensors) and
        ``config.json`` (``format_version``, architecture, var names, training
        parameters and history).

        The folder is written under a temporary name next to ``path`` and then
        renamed, so an interrupted save never leaves a half-written model.
        ``overwrite=True`` replaces a folder holding a saved model, never one
        holding other files.

        Parameters
        ----------
        path
            Folder to write; it must not exist, or be empty, or (with
            ``overwrite``) hold a saved model.
        overwrite
            Replace a model saved at ``path``.

        Examples
        --------
        >>> import numpy as np
        >>> import sc_neuronedit as sne
        >>> X = np.random.default_rng(0).normal(size=(300, 20)).astype("float32")
        >>> treated = np.arange(300) >= 150
        >>> X[treated, :5] += 2.0  # the treatment raises features 0-4
        >>> model = sne.NeuronEditor(X, hidden=(32,), n_latent=8).train(max_epochs=5, progress=False)
        >>> import tempfile
        >>> path = tempfile.mkdtemp()
        >>> model.save(path)
        >>> sne.NeuronEditor.load(path, X).n_features
        20
        """
        import secrets
        import shutil

        net = self._require_trained()
        path = Path(path)
        old = sorted(p.name for p in path.iterdir()) if path.is_dir() else None
        if path.exists() and old is None:
            raise FileExistsError(f"{path} exists and is not a folder.")
        if old and not overwrite:
            raise FileExistsError(f"{path} exists and is not empty; pass overwrite=True.")
        if old and not set(old) <= {_CONFIG, _WEIGHTS}:
            raise FileExistsError(f"{path} holds files other than a saved model ({', '.join(old[:5])}); "
                                  "not overwriting it.")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, aside = (path.parent / f".{path.name}.{secrets.token_hex(4)}.{end}" for end in ("tmp", "old"))
        tmp.mkdir()
        try:
            torch.save({k: v.cpu() for k, v in net.state_dict().items()}, tmp / _WEIGHTS)
            config = {
                "format_version": _FORMAT_VERSION,
                "n_features": self.n_features,
                "feature_names": None if self.feature_names is None else self.feature_names.tolist(),
                "layer": self.layer,
                **self.config,
                "train_params": self.train_params,
                "history": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                            for k, v in self.history.to_dict().items()},
            }
            (tmp / _CONFIG).write_text(json.dumps(config, indent=1))
            if old:  # move the old model aside, swap, and only then remove it
                path.replace(aside)
                try:
                    tmp.replace(path)
                except BaseException:
                    aside.replace(path)
                    raise
                shutil.rmtree(aside)
            else:
                tmp.replace(path)  # also replaces an empty folder
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)

    @classmethod
    def load(cls, path: str | Path, data, *, layer: str | None = None, device="auto") -> NeuronEditor:
        """Load a saved model and attach it to ``data``.

        The features the model was trained on must be present in ``data``: by
        var name for AnnData (in any order, other features are passed
        through), by count for arrays. The weights are read as plain tensors
        only, so a file crafted to run code on loading is refused.

        Parameters
        ----------
        path
            Folder written by :meth:`save`.
        data
            :class:`~anndata.AnnData` or cells x features array to attach the
            model to, as for :class:`NeuronEditor`.
        layer
            Layer of ``data`` to model; default the layer the model was
            trained on (AnnData only).
        device
            ``"auto"`` uses a GPU when present.

        Returns
        -------
        A trained :class:`NeuronEditor` on ``data``.

        Examples
        --------
        >>> import numpy as np
        >>> import sc_neuronedit as sne
        >>> X = np.random.default_rng(0).normal(size=(300, 20)).astype("float32")
        >>> treated = np.arange(300) >= 150
        >>> X[treated, :5] += 2.0  # the treatment raises features 0-4
        >>> model = sne.NeuronEditor(X, hidden=(32,), n_latent=8).train(max_epochs=5, progress=False)
        >>> import tempfile
        >>> path = tempfile.mkdtemp()
        >>> model.save(path)
        >>> loaded = sne.NeuronEditor.load(path, X)
        >>> np.allclose(loaded.encode(), model.encode())
        True
        """
        path = Path(path)
        if not (path / _CONFIG).is_file() or not (path / _WEIGHTS).is_file():
            raise FileNotFoundError(f"{path} does not hold a saved NeuronEditor ({_CONFIG}, {_WEIGHTS}).")
        config = json.loads((path / _CONFIG).read_text())
        version = config.get("format_version")
        if not isinstance(version, int) or version > _FORMAT_VERSION:
            raise ValueError(
                f"{path} was saved in model format_version {version!r}; this version of "
                f"sc_neuronedit reads format_version <= {_FORMAT_VERSION}. Upgrade sc_neuronedit."
            )
        names = config["feature_names"]
        mask_var = columns = None
        if _ad.is_anndata(data):
            if names is None:
                raise ValueError("This model was trained on an array; load it with an array.")
            if not data.var_names.is_unique:
                raise ValueError("The data's var names are not unique; call adata.var_names_make_unique().")
            columns = data.var_names.get_indexer(names)
            if (columns < 0).any():
                missing = [n for n, c in zip(names, columns) if c < 0]
                raise ValueError(
                    f"The data's var names do not match the model's features: {len(missing)} of "
                    f"{len(names)} missing: {missing[:20]}{' ...' if len(missing) > 20 else ''}."
                )
            mask_var = np.zeros(data.n_vars, dtype=bool)
            mask_var[columns] = True
            if mask_var.all() and (columns == np.arange(data.n_vars)).all():
                mask_var = columns = None
        model = cls(
            data, layer=layer if layer is not None else (config["layer"] if _ad.is_anndata(data) else None),
            mask_var=mask_var, hidden=config["hidden"], n_latent=config["n_latent"],
            edit_layer=config["edit_layer"], standardize=config.get("standardize", False),
        )
        if columns is not None:  # the data's columns in the model's feature order
            model._columns, model.feature_names = columns, np.asarray(names, dtype=object)
        if model.n_features != config["n_features"]:
            raise ValueError(
                f"The model expects {config['n_features']} features, the data has {model.n_features}."
            )
        net = Autoencoder(model.n_features, config["hidden"], config["n_latent"])
        try:
            state = torch.load(path / _WEIGHTS, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
            raise ValueError(
                f"{path / _WEIGHTS} is not a state dict of tensors for this architecture; "
                "refusing to load it (a file holding anything else could run code). "
                f"Reason: {str(err).splitlines()[0][:200]}"
            ) from err
        model.device = resolve_device(device)
        model.network = net.to(model.device).eval()
        model.train_params = config["train_params"]
        model.history = TrainingHistory.from_dict(config["history"])
        return model


MIN_SCALE = 0.1


def _standardization(rows, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and floored standard deviation, streamed over row chunks."""
    n = rows.shape[0]
    mine = shard(np.arange(n))  # each rank sums its part; the sums are added up
    sums = torch.zeros((2, rows.shape[1]), dtype=torch.float64)
    for start in range(0, len(mine), chunk):
        block = torch.as_tensor(np.asarray(take_rows(rows, mine[start : start + chunk]), dtype=np.float64))
        sums[0] += block.sum(dim=0)
        sums[1] += (block**2).sum(dim=0)
    total, total_sq = all_reduce_sum(sums).numpy()
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 0.0))
    return (torch.as_tensor(mean, dtype=torch.float32),
            torch.as_tensor(np.maximum(std, MIN_SCALE), dtype=torch.float32))


class _Rows:
    """A fixed subset of rows of a view, indexable like a matrix."""

    def __init__(self, view: _Columns, idx: np.ndarray):
        self.view, self.idx = view, idx
        self.shape = (len(idx), view.shape[1])

    def __getitem__(self, i):
        return self.view[self.idx[i]]


def _as_matrix(data):
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    if sparse.issparse(data):
        return sparse.csr_matrix(data)
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError(f"Expected a cells x features matrix, got shape {arr.shape}.")
    return arr
