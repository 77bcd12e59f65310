"""Reliability (issue 7): model files, determinism, input types and ``.h5ad`` round trips.

Tiny models (one hidden layer of 16, 4 latent neurons, one epoch) on the
synthetic data of ``conftest.py`` and ``test_combination.py``.
"""

import json
import pickle

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_same, snapshot
from scipy import sparse
from test_combination import drugs

import sc_neuronedit as sne
from sc_neuronedit import _persist

SMALL = dict(hidden=(16,), n_latent=4)
TRAIN = dict(max_epochs=1, batch_size=64, progress=False, device="cpu")
TL = dict(max_epochs=1, progress=False, device="cpu", model_kwargs=SMALL)
SRC, TGT = {"condition": "control"}, {"condition": "treated"}


@pytest.fixture
def saved(toy_adata, tmp_path):
    """A model trained on ``toy_adata``'s 20 ``hv`` genes, saved to ``tmp_path / "model"``."""
    model = sne.NeuronEditor(toy_adata, mask_var="hv", **SMALL).train(random_state=0, **TRAIN)
    model.save(tmp_path / "model")
    return model, tmp_path / "model"


# ---------------------------------------------------------------- model files


def test_save_writes_a_versioned_folder(saved, toy_adata):
    model, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "weights.pt"]
    assert [p.name for p in path.parent.iterdir()] == ["model"]  # no temporary folder left
    config = json.loads((path / "config.json").read_text())
    assert config["format_version"] == 1  # what older releases read; 2 only for edit_layer="input"
    assert config["feature_names"] == list(toy_adata.var_names[:20])
    assert config["hidden"] == [16] and config["n_latent"] == 4
    state = torch.load(path / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_save_is_atomic(saved, toy_adata, monkeypatch):
    model, path = saved
    edit = model.learn_edit(SRC, TGT)
    before = model.apply_edit(SRC, edit)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(_persist.json, "dumps", broken)  # fails after the weights are written
    with pytest.raises(OSError, match="disk full"):
        model.save(path.parent / "new")
    with pytest.raises(OSError, match="disk full"):
        model.save(path, overwrite=True)
    monkeypatch.undo()
    # nothing half-written, no temporary folders, and the old model is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["model"]
    loaded = sne.NeuronEditor.load(path, toy_adata, device="cpu")
    np.testing.assert_array_equal(loaded.apply_edit(SRC, edit), before)
    model.save(path, overwrite=True)  # a successful overwrite swaps the folder
    assert sorted(p.name for p in path.parent.iterdir()) == ["model"]


def test_save_never_overwrites_other_files(saved, tmp_path):
    model, _ = saved
    other = tmp_path / "results"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="results"):
            model.save(other, overwrite=overwrite)
    assert (other / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        model.save(tmp_path / "file", overwrite=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    model.save(empty)  # an empty folder is fine
    assert (empty / "weights.pt").is_file()


def test_load_refuses_a_newer_format(saved, toy_adata):
    _, path = saved
    config = json.loads((path / "config.json").read_text())
    for version in (_persist.FORMAT_VERSION + 1, None):
        config["format_version"] = version
        (path / "config.json").write_text(json.dumps(config))
        with pytest.raises(ValueError, match=rf"format_version {version}.*reads format_version <= 2"):
            sne.NeuronEditor.load(path, toy_adata)


def test_input_layer_model_saves_and_loads(toy_adata, tmp_path):
    model = sne.NeuronEditor(toy_adata, mask_var="hv", edit_layer="input").train()
    edit = model.learn_edit(SRC, TGT)
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["format_version"] == 2
    loaded = sne.NeuronEditor.load(tmp_path / "m", toy_adata, device="cpu")
    assert loaded.edit_layer == "input"
    np.testing.assert_array_equal(loaded.apply_edit(SRC, edit), model.apply_edit(SRC, edit))


def test_load_reorders_genes(saved, toy_adata):
    model, path = saved
    edit = model.learn_edit(SRC, TGT)
    expected = model.apply_edit(SRC, edit)
    order = np.random.default_rng(0).permutation(toy_adata.n_vars)
    shuffled = toy_adata[:, order].copy()
    shuffled.var_names = toy_adata.var_names[order]
    loaded = sne.NeuronEditor.load(path, shuffled, device="cpu")
    assert list(loaded.feature_names) == list(model.feature_names)
    np.testing.assert_allclose(loaded.encode(SRC), model.encode(SRC), rtol=0, atol=1e-6)
    # predictions come back in the data's column order; the same edit object still applies
    np.testing.assert_allclose(loaded.apply_edit(SRC, edit), expected[:, order], rtol=0, atol=1e-6)
    relearned = loaded.learn_edit(SRC, TGT)
    np.testing.assert_allclose(loaded.apply_edit(SRC, relearned), expected[:, order], rtol=0, atol=1e-5)
    # extra genes are passed through, whatever their position
    extra = ad.concat([shuffled, ad.AnnData(np.ones((shuffled.n_obs, 2), np.float32),
                       obs=shuffled.obs, var=pd.DataFrame(index=["new1", "new2"]))], axis=1,
                      merge="same")
    out = sne.NeuronEditor.load(path, extra, device="cpu").apply_edit(SRC, edit)
    np.testing.assert_allclose(out[:, : toy_adata.n_vars], expected[:, order], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out[:, -2:], 1.0)


def test_load_names_missing_genes(saved, toy_adata):
    _, path = saved
    sub = toy_adata[:, ~toy_adata.var_names.isin(["g3", "g17"])].copy()
    with pytest.raises(ValueError, match=r"2 of 20 missing: \['g3', 'g17'\]"):
        sne.NeuronEditor.load(path, sub)
    dup = toy_adata.copy()
    dup.var_names = ["g0"] * 2 + list(toy_adata.var_names[2:])
    with pytest.raises(ValueError, match="not unique"):
        sne.NeuronEditor.load(path, dup)


class _RunsCode:
    """Unpickling this calls ``open(marker, "w")``: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_crafted_weights_file_is_not_executed(saved, toy_adata, tmp_path, writer):
    _, path = saved
    # the payload is live: unpickling it by hand does run it
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_RunsCode(probe))).close()
    assert probe.exists()
    marker = tmp_path / "marker"
    payload = {"layers.0.weight": _RunsCode(marker)}
    if writer == "pickle":
        (path / "weights.pt").write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path / "weights.pt")
    with pytest.raises(ValueError, match="refusing to load it"):
        sne.NeuronEditor.load(path, toy_adata)
    assert not marker.exists()


def test_foreign_or_corrupt_weights_are_refused(saved, toy_adata):
    _, path = saved
    torch.save({"something": torch.zeros(3)}, path / "weights.pt")
    with pytest.raises(ValueError, match="not a state dict of tensors for this architecture"):
        sne.NeuronEditor.load(path, toy_adata)
    (path / "weights.pt").write_bytes(b"not a weights file")
    with pytest.raises(ValueError, match="refusing to load it"):
        sne.NeuronEditor.load(path, toy_adata)


# ---------------------------------------------------------------- determinism


def _predict(adata, **kwargs):
    sne.tl.predict_perturbation(adata, "condition", control="control", perturbed="treated",
                                groupby="cell_type", predict_for="C", **{**TL, **kwargs})
    return adata.layers["predicted_perturbation"]


def test_same_seed_gives_bit_identical_predictions(toy_adata):
    # test_model.py checks the weights; this checks the whole pipeline's output
    a, b, c = toy_adata.copy(), toy_adata.copy(), toy_adata.copy()
    assert torch.get_num_threads() <= 2  # conftest fixes the thread count
    same = _predict(a, random_state=3)
    np.testing.assert_array_equal(_predict(b, random_state=3), same)
    for x in (a, b):
        del x.uns["predicted_perturbation"]["history"]["seconds"]  # wall-clock time
    assert_same(dict(a.uns), dict(b.uns), "uns")
    assert not np.array_equal(_predict(c, random_state=4), same)


def test_dense_csr_float64_and_int_inputs_agree(toy_adata):
    counts = np.random.default_rng(0).poisson(1.5, size=toy_adata.shape)
    base = ad.AnnData(counts.astype(np.float32), obs=toy_adata.obs, var=toy_adata.var)
    reference = _predict(base.copy())
    variants = {
        "csr": sparse.csr_matrix(base.X), "float64": base.X.astype(np.float64),
        "int64": counts.astype(np.int64), "csr int32": sparse.csr_matrix(counts.astype(np.int32)),
    }
    for name, X in variants.items():
        other = ad.AnnData(X, obs=toy_adata.obs, var=toy_adata.var)
        out = _predict(other)
        out = out.toarray() if sparse.issparse(out) else out
        assert out.dtype == np.float32, name
        np.testing.assert_allclose(out, reference, rtol=0, atol=1e-5, err_msg=name)
        assert other.X.dtype == X.dtype  # the input is kept as it was


# ---------------------------------------------------------------- h5ad round trip


def _neuron_edit(adata):
    sne.tl.neuron_edit(adata, {"cell_type": ["A", "B"], "condition": "control"},
                       {"cell_type": ["A", "B"], "condition": "treated"},
                       apply_to={"cell_type": "C", "condition": "control"}, groupby="cell_type", **TL)


def _batch_correct(adata):
    adata.obs["reference"] = np.arange(adata.n_obs) % 2 == 0
    sne.tl.batch_correct(adata, "cell_type", reference_key="reference", reference_value=True,
                         reference_batch="A", min_reference_cells=10, calibrate=True, **TL)


COMBINATION = dict(control="ctrl", n_resamples=2, **TL)
RUNS = {
    "neuron_edit": _neuron_edit,
    "predict_perturbation": _predict,
    "batch_correct": _batch_correct,
    "predict_combination": lambda a: sne.tl.predict_combination(
        a, "condition", drug_a="A", drug_b="B", combination="AB", **COMBINATION),
    "synergy": lambda a: sne.tl.synergy(a, "condition", combinations={"AB": ("A", "B")},
                                        **COMBINATION),
}


@pytest.mark.parametrize("tool", list(RUNS))
def test_results_survive_an_h5ad_round_trip(tool, toy_adata, tmp_path):
    adata = drugs(0.5, n=40) if tool in ("predict_combination", "synergy") else toy_adata
    RUNS[tool](adata)
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert_same(snapshot(back), snapshot(adata))
    assert_same(back.var, adata.var, "var")
    assert back.obs.dtypes.equals(adata.obs.dtypes)
    (key,) = set(adata.uns)
    assert "params" in back.uns[key]
    for name, value in _walk(adata.uns[key]):  # what .uns holds: h5ad-native types only
        assert isinstance(value, (str, int, float, bool, np.ndarray, pd.DataFrame)), (name, type(value))


def _walk(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _walk(v, f"{prefix}{k}/")
        else:
            yield f"{prefix}{k}", v
