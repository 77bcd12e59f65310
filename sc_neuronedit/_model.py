"""The user-facing model: an autoencoder over an AnnData (or array) plus edits.

A facade. Each method resolves its inputs once through the data edge
(:mod:`sc_neuronedit._anndata`) and calls one array engine: the network passes
(:mod:`~sc_neuronedit._passes`), learning an edit (:mod:`~sc_neuronedit._learning`),
applying it (:mod:`~sc_neuronedit._applying`); the network lives in
:mod:`sc_neuronedit.nn`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from . import _anndata as _ad
from . import _applying, _fitting, _learning, _persist
from ._applying import DECODE_FORMS
from ._edit import MIN_POPULATION_CELLS
from ._learning import INPUT, RESIDUAL_BINS, Edit
from ._matrix import check_finite
from ._passes import BATCH_SIZE, encode_rows
from ._persist import resolve_device
from .nn import Autoencoder, InputLayer, TrainingHistory


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
        Layer whose units are edited: ``"bottleneck"`` (default; ``None`` means
        the same), a hidden layer counted over encoder, bottleneck and decoder
        hidden layers from 0, or ``"input"``: the features themselves, a
        per-feature quantile map with no autoencoder (nothing is trained; the
        right basis for small marker panels, the wrong one for sparse
        expression, where the bottleneck wins).
    standardize
        Standardise each feature (centre, divide by its standard deviation on
        the training cells, floored at 0.1) inside the network,
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
        edit_layer: int | str | None = "bottleneck",
        standardize: bool = True,
    ):
        # A bound Data is how load() attaches a saved model with its own feature order.
        self._data = data if isinstance(data, _ad.Data) else _ad.Data(data, layer=layer,
                                                                        mask_var=mask_var)
        if isinstance(edit_layer, str) and edit_layer not in ("bottleneck", INPUT):
            raise ValueError(f"edit_layer must be 'bottleneck', 'input' or a hidden layer's index, "
                             f"got {edit_layer!r}.")
        if edit_layer == "bottleneck":
            edit_layer = None
        self.config = {
            "hidden": [int(h) for h in hidden],
            "n_latent": int(n_latent),
            "edit_layer": edit_layer if edit_layer in (None, INPUT) else int(edit_layer),
            "standardize": bool(standardize),
        }
        probe = Autoencoder(self.n_features, hidden, n_latent)  # validates widths and layer
        self.edit_layer = (INPUT if edit_layer == INPUT else
                           probe.bottleneck if edit_layer is None else probe._check_layer(edit_layer))
        self.network: Autoencoder | None = None
        self.history: TrainingHistory | None = None
        self.train_params: dict = {}
        # Rows of the data the autoencoder was trained on (None: unknown, e.g. after load() or
        # training on a separate matrix), so that a tl function can tell whether a prediction
        # is out of sample.
        self.trained_rows: np.ndarray | None = None
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------ data
    @property
    def adata(self):
        """The AnnData the model is bound to (``None`` for array input)."""
        return self._data.adata

    @property
    def layer(self) -> str | None:
        """The layer modelled (``None``: ``.X``)."""
        return self._data.layer

    @property
    def feature_names(self) -> np.ndarray | None:
        """Var names of the model's features, in its order (``None`` for array input)."""
        return self._data.feature_names

    @property
    def feature_mask(self) -> np.ndarray | None:
        """Boolean mask over the data's features that the model sees (``None``: all)."""
        return self._data.feature_mask

    @property
    def columns(self) -> np.ndarray | None:
        """The data's columns in the model's feature order (``None``: all, in order)."""
        return self._data.columns

    @property
    def n_features(self) -> int:
        """Number of features the autoencoder sees."""
        return self._data.n_features

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
        The model itself, trained; ``history`` holds the loss curves,
        ``train_params`` the settings and ``trained_rows`` the rows of the
        data trained on (not saved by :meth:`save`).

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
        rows = self._data.cells(cells, name="cells")
        check_finite(rows, what="The training matrix")
        self.device = resolve_device(device)
        self.network, self.history, self.train_params = _fitting.fit(
            self.n_features, self.config, rows, device=self.device, max_epochs=max_epochs,
            batch_size=batch_size, lr=lr, weight_decay=weight_decay,
            validation_fraction=validation_fraction, patience=patience,
            random_state=random_state, progress=progress, mixed_precision=mixed_precision)
        if self.edit_layer != INPUT:
            self.trained_rows = rows.idx if self._data.owns(rows) else None
        return self

    def _require_trained(self) -> Autoencoder | InputLayer:
        if self.network is None:
            raise RuntimeError("The autoencoder is not trained yet; call .train() first.")
        return self.network

    # ----------------------------------------------------------- inference
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
        return self._encode(self._data.cells(cells)).cpu().numpy()

    def _encode(self, cells) -> torch.Tensor:
        return encode_rows(self._require_trained(), self.edit_layer, cells, self.device)

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
        with torch.no_grad():
            return net.decode(z, self.edit_layer).cpu().numpy()

    def learn_edit(
        self, source, target, *, n_quantiles: int = 100, groupby=None, populations=None,
        min_population_cells: int = MIN_POPULATION_CELLS, residual: bool = True,
        residual_bins: int = RESIDUAL_BINS, random_state: int = 0,
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
        populations
            Per-cell population labels (an ``.obs`` column name, or an array over
            the rows that ``source`` and ``target`` select from; with matrices, a
            pair ``(source_labels, target_labels)``). One edit is then learned
            within each population from its own source and target cells, so a
            response confined to one population is not diluted by the others.
            A population with fewer than ``min_population_cells`` source or target
            cells (or, with ``groupby``, fewer than 2 groups of at least 5 cells
            on a side whose cells span several groups) takes the pooled edit, with
            a warning; :attr:`Edit.fallback` says why.
        min_population_cells
            Fewest source and target cells of a population's own edit.
        residual
            Also learn the per-feature edit of the reconstruction residual that
            ``decode="edited_residual"`` needs (on at most
            :data:`RESIDUAL_MAX_CELLS` cells per side, drawn with ``random_state``).
        residual_bins
            Level bins of the residual edit, per feature and side: a cell's
            residual takes its quantile among the source residuals at its own
            decoded level and the same quantile of the target residuals at its
            edited level, so a gene that switches on heterogeneously gets its
            spread. ``1`` pools all levels (the edit before this option). A
            feature with a bin under
            :data:`~sc_neuronedit._residual.MIN_BIN_CELLS` effective cells
            falls back to the pooled edit. See
            :func:`~sc_neuronedit._residual.fit_level_residual_edit`.
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
        >>> edit.neurons.n_neurons, edit.residual.n_features
        (8, 20)

        Within populations, each with its own edit:

        >>> kind = np.where(np.arange(300) % 2 == 0, "even", "odd")
        >>> edit = model.learn_edit(~treated, treated, populations=kind)
        >>> sorted(edit.populations)
        ['even', 'odd']
        """
        source = self._data.cells(source, name="source")
        target = self._data.cells(target, name="target")
        s_groups = t_groups = None
        if groupby is not None:
            if not (self._data.owns(source) and self._data.owns(target)):
                raise ValueError("groupby= needs source and target given as cells of the data, "
                                 "not as matrices.")
            groups = self._data.row_labels(groupby, name="groupby")
            s_groups, t_groups = groups[source.idx], groups[target.idx]
        if populations is not None:
            populations = self._data.side_labels(populations, source, target)
        return _learning.learn_edit(
            self._require_trained(), self.edit_layer, source, target, device=self.device,
            source_groups=s_groups, target_groups=t_groups, populations=populations,
            n_quantiles=n_quantiles, min_population_cells=min_population_cells,
            residual=residual, residual_bins=residual_bins, random_state=random_state)

    def apply_edit(
        self, cells, edit: Edit, *, populations=None, decode: str = "edited_residual",
        batch_size: int = BATCH_SIZE, out=None,
    ):
        """Edit the cells' activations and decode them.

        Parameters
        ----------
        cells
            Cells to transform (selection, mask or matrix).
        edit
            From :meth:`learn_edit`.
        populations
            Needed when ``edit`` was learned within populations: the cells'
            population labels (an ``.obs`` column name or an array over the data's
            rows; with a matrix, one label per row of it). Each cell takes its own
            population's edit; populations without one take the pooled edit (a
            warning names those that the edit never saw).
        decode
            How the edited activations ``z'`` become values, with ``z`` the
            cell's own activations and ``r = x - decode(z)`` its reconstruction
            residual (what the autoencoder cannot represent: noise, dropout,
            fine detail):

            ``"edited_residual"`` (default)
                ``decode(z') + edit_r(r)``: the residual is edited too, per
                feature, by the quantile edit learned from the source to the
                target residuals, within level bins (``residual_bins`` of
                :meth:`learn_edit`): ranked among source residuals at the
                cell's decoded level ``decode(z)``, mapped onto target
                residuals at its edited level ``decode(z')``. It carries a
                change of noise (e.g. genes that switch on heterogeneously)
                that no decoder of a smooth latent space can produce.
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
        net, cells = self._require_trained(), self._data.cells(cells)
        return _applying.apply_edit(net, self.edit_layer, cells, edit,
                                    self._labels(populations, cells), decode,
                                    batch_size=batch_size, out=out)

    def _labels(self, populations, cells) -> np.ndarray | None:
        return None if populations is None else self._data.cell_labels(populations, cells)

    def edit_statistics(self, cells, edit: Edit, *, populations=None) -> dict[str, np.ndarray]:
        """Knots, per-neuron shift summary and the share of ``cells`` outside the source range.

        Parameters
        ----------
        cells
            Cells the edit is (to be) applied to (selection, mask or matrix).
        edit
            From :meth:`learn_edit`.
        populations
            The cells' populations, as in :meth:`apply_edit`; needed when
            ``edit`` was learned within populations. The knots and shift
            summary are then the pooled edit's, and the ``outside_fraction``
            counts each cell against its own population's edit.

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
        cells = self._data.cells(cells)
        codes, edits = _applying.routes(edit, self._labels(populations, cells), warn_unseen=False)
        return _applying.statistics(edit, self._encode(cells), codes, edits)

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
        _persist.save(self, path, overwrite=overwrite)

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
        return _persist.load(cls, path, data, layer=layer, device=device)
