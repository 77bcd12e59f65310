"""Saving a :class:`~sc_neuronedit.NeuronEditor` to a folder and loading it back.

A folder holds ``weights.pt`` (a plain state dict of tensors, read with
``weights_only=True``) and ``config.json`` (format version, architecture, var
names, training parameters and history). Writes are atomic: a new folder is
written under a temporary name and swapped in.
"""

from __future__ import annotations

import json
import pickle
import secrets
import shutil
from pathlib import Path

import numpy as np
import torch

from . import _anndata as _ad
from .nn import TrainingHistory, new_network

CONFIG = "config.json"
WEIGHTS = "weights.pt"
#: The newest format this version reads. Version 2 adds ``edit_layer="input"``; other
#: models are still written as version 1, so that older releases keep reading them.
FORMAT_VERSION = 2


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def save(model, path: str | Path, *, overwrite: bool = False) -> None:
    """Write ``model`` to the folder ``path`` (see :meth:`NeuronEditor.save`)."""
    net = model.network
    if net is None:
        raise RuntimeError("The autoencoder is not trained yet; call .train() first.")
    path = Path(path)
    old = sorted(p.name for p in path.iterdir()) if path.is_dir() else None
    if path.exists() and old is None:
        raise FileExistsError(f"{path} exists and is not a folder.")
    if old and not overwrite:
        raise FileExistsError(f"{path} exists and is not empty; pass overwrite=True.")
    if old and not set(old) <= {CONFIG, WEIGHTS}:
        raise FileExistsError(f"{path} holds files other than a saved model ({', '.join(old[:5])}); "
                              "not overwriting it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, aside = (path.parent / f".{path.name}.{secrets.token_hex(4)}.{end}" for end in ("tmp", "old"))
    tmp.mkdir()
    try:
        torch.save({k: v.cpu() for k, v in net.state_dict().items()}, tmp / WEIGHTS)
        config = {
            "format_version": 2 if model.config["edit_layer"] == "input" else 1,
            "n_features": model.n_features,
            "feature_names": None if model.feature_names is None else model.feature_names.tolist(),
            "layer": model.layer,
            **model.config,
            "train_params": model.train_params,
            "history": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                        for k, v in model.history.to_dict().items()},
        }
        (tmp / CONFIG).write_text(json.dumps(config, indent=1))
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


def load(cls, path: str | Path, data, *, layer: str | None = None, device="auto"):
    """A trained ``cls`` read from ``path`` and attached to ``data`` (see :meth:`NeuronEditor.load`)."""
    path = Path(path)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise FileNotFoundError(f"{path} does not hold a saved NeuronEditor ({CONFIG}, {WEIGHTS}).")
    config = json.loads((path / CONFIG).read_text())
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{path} was saved in model format_version {version!r}; this version of "
            f"sc_neuronedit reads format_version <= {FORMAT_VERSION}. Upgrade sc_neuronedit."
        )
    names = config["feature_names"]
    mask_var = columns = None
    bound = data
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
        # The data's columns in the model's feature order, whatever the data's order.
        bound = _ad.Data(data, layer=config["layer"] if layer is None else layer,
                         mask_var=mask_var, order=None if columns is None else names)
    model = cls(bound, layer=layer, hidden=config["hidden"], n_latent=config["n_latent"],
                edit_layer=config["edit_layer"], standardize=config.get("standardize", False))
    if model.n_features != config["n_features"]:
        raise ValueError(
            f"The model expects {config['n_features']} features, the data has {model.n_features}."
        )
    net = new_network(model.n_features, model.config)
    try:
        state = torch.load(path / WEIGHTS, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"{path / WEIGHTS} is not a state dict of tensors for this architecture; "
            "refusing to load it (a file holding anything else could run code). "
            f"Reason: {str(err).splitlines()[0][:200]}"
        ) from err
    model.device = resolve_device(device)
    model.network = net.to(model.device).eval()
    model.train_params = config["train_params"]
    model.history = TrainingHistory.from_dict(config["history"])
    return model
