import warnings

import anndata as ad
import numpy as np
import pytest
from conftest import assert_unchanged, snapshot

import sc_neuronedit as sne

FAST = dict(max_epochs=3, progress=False, device="cpu",
            model_kwargs=dict(hidden=(32,), n_latent=8))
PERTURB = dict(control="control", perturbed="treated", groupby="cell_type")


def test_neuron_edit_writes_layer_obs_uns(toy_adata, tmp_path):
    X0 = toy_adata.X.copy()
    sne.tl.neuron_edit(toy_adata, {"cell_type": ["A", "B"], "condition": "control"},
                       {"cell_type": ["A", "B"], "condition": "treated"},
                       apply_to={"cell_type": "C", "condition": "control"}, **FAST)
    edited = toy_adata.obs["neuron_edit_edited"].to_numpy()
    assert edited.dtype == bool and edited.sum() == 60
    layer = toy_adata.layers["neuron_edit"]
    np.testing.assert_array_equal(layer[~edited], X0[~edited])  # other rows keep their input
    assert not np.allclose(layer[edited], X0[edited])
    np.testing.assert_array_equal(toy_adata.X, X0)  # input never overwritten
    uns = toy_adata.uns["neuron_edit"]
    assert {"params", "history", "edit", "outside_fraction"} <= set(uns)
    assert uns["edit"]["mean_shift"].shape == (8,)
    assert len(uns["history"]["train_loss"]) == 3
    # everything in .uns survives an .h5ad round trip
    toy_adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad").uns["neuron_edit"]
    np.testing.assert_allclose(back["edit"]["outside_fraction"], uns["edit"]["outside_fraction"])
    assert back["params"]["decode"] == "edited_residual"
    assert back["params"]["train"]["max_epochs"] == 3


def test_predict_perturbation_inplace_and_copy(toy_adata):
    sne.tl.predict_perturbation(toy_adata, "condition", predict_for="C", **PERTURB, **FAST)
    key = "predicted_perturbation"
    assert toy_adata.obs[f"{key}_edited"].sum() == 60
    assert list(toy_adata.uns[key]["training_groups"]) == ["A", "B"]
    out = sne.tl.predict_perturbation(toy_adata, "condition", predict_for="C", inplace=False,
                                      **PERTURB, **FAST)
    assert out.n_obs == 60 and (out.obs["condition"] == "treated (predicted)").all()
    np.testing.assert_allclose(out.X, toy_adata.layers[key][toy_adata.obs[f"{key}_edited"].to_numpy()])


def test_predict_perturbation_never_trains_on_held_out_treated(toy_adata):
    sne.tl.predict_perturbation(toy_adata, "condition", predict_for="C", **PERTURB, **FAST)
    assert toy_adata.uns["predicted_perturbation"]["params"]["train"]["n_cells"] == 300


def test_predicts_known_shift(toy_adata):
    # 'treated' adds +2 to genes 0-4 in every type; C must get about +2 there and ~0 elsewhere
    sne.tl.predict_perturbation(toy_adata, "condition", predict_for="C", **PERTURB,
                                **{**FAST, "max_epochs": 80}, train_kwargs=dict(lr=1e-2))
    m = toy_adata.obs["predicted_perturbation_edited"].to_numpy()
    delta = (toy_adata.layers["predicted_perturbation"][m] - toy_adata.X[m]).mean(axis=0)
    assert np.all(np.abs(delta[:5] - 2) < 0.4), delta[:5]
    assert np.abs(delta[5:]).mean() < 0.4


def test_sparse_input_keeps_sparse_layer(toy_adata):
    from scipy import sparse

    toy_adata.X = sparse.csr_matrix(np.maximum(toy_adata.X, 0))
    sne.tl.predict_perturbation(toy_adata, "condition", predict_for="C", **PERTURB, **FAST)
    layer = toy_adata.layers["predicted_perturbation"]
    assert sparse.issparse(layer)
    m = toy_adata.obs["predicted_perturbation_edited"].to_numpy()
    np.testing.assert_array_equal(layer[~m].toarray(), toy_adata.X[~m].toarray())


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(condition_key="treatment"), KeyError,
         "'treatment' is not a column.*available: cell_type, condition"),
        (dict(control="ctrl"), ValueError, r"\['ctrl'\] not found.*available: control, treated"),
        (dict(predict_for="Z"), ValueError, r"\['Z'\] not found"),
        (dict(groupby="celltype"), KeyError, "'celltype' is not a column"),
        (dict(layer="counts"), KeyError, "Layer 'counts' not found"),
        (dict(key_added="counts", layer="counts"), ValueError, "equals the input layer"),
        (dict(predict_for=["A", "B", "C"]), ValueError, "nothing to learn"),
        (dict(mask_var="highly_variable"), KeyError, "mask_var='highly_variable' is not a column"),
    ],
)
def test_bad_input_raises_and_leaves_adata_unchanged(toy_adata, kwargs, error, match):
    if kwargs.get("key_added") == "counts":
        toy_adata.layers["counts"] = toy_adata.X.copy()
    args = dict(condition_key="condition", predict_for="C", **PERTURB, **FAST)
    args.update(kwargs)
    snap = snapshot(toy_adata)
    with pytest.raises(error, match=match):
        sne.tl.predict_perturbation(toy_adata, args.pop("condition_key"), **args)
    assert_unchanged(toy_adata, snap)


def test_empty_group_and_nan_are_rejected(toy_adata):
    snap = snapshot(toy_adata)
    none = np.zeros(toy_adata.n_obs, dtype=bool)
    with pytest.raises(ValueError, match="source selects no cells"):
        sne.tl.neuron_edit(toy_adata, none, {"condition": "treated"}, apply_to={"cell_type": "C"}, **FAST)
    assert_unchanged(toy_adata, snap)
    toy_adata.X[0, 0] = np.inf
    snap = snapshot(toy_adata)
    with pytest.raises(ValueError, match="NaN or inf"):
        sne.tl.predict_perturbation(toy_adata, "condition", predict_for="C", **PERTURB, **FAST)
    assert_unchanged(toy_adata, snap)


def test_held_out_group_without_control_cells(toy_adata):
    sub = toy_adata[~((toy_adata.obs.cell_type == "C") & (toy_adata.obs.condition == "control"))].copy()
    with pytest.raises(ValueError, match="has no 'control' cells"):
        sne.tl.predict_perturbation(sub, "condition", predict_for="C", **PERTURB, **FAST)


def test_reuses_a_trained_model(toy_adata):
    model = sne.NeuronEditor(toy_adata, hidden=(32,), n_latent=8).train(max_epochs=3, progress=False)
    sne.tl.neuron_edit(toy_adata, {"condition": "control"}, {"condition": "treated"},
                       apply_to={"condition": "control"}, model=model)
    assert toy_adata.uns["neuron_edit"]["params"]["train"]["max_epochs"] == 3
    with pytest.raises(ValueError, match="another AnnData"):
        sne.tl.neuron_edit(toy_adata.copy(), {"condition": "control"}, {"condition": "treated"},
                           apply_to={"condition": "control"}, model=model)


def test_a_model_that_saw_the_held_out_target_warns(toy_adata):
    model = sne.NeuronEditor(toy_adata, hidden=(32,), n_latent=8)
    model.train(max_epochs=2, progress=False, device="cpu")  # all cells: C treated included
    with pytest.warns(UserWarning, match=r"model was trained on 60 'treated' cells of "
                                         r"predict_for='C'.*not out of sample"):
        sne.tl.predict_perturbation(toy_adata, "condition", predict_for="C", model=model,
                                    progress=False, **PERTURB)
    held_out = ((toy_adata.obs.cell_type == "C") & (toy_adata.obs.condition == "treated")).to_numpy()
    model.train(cells=~held_out, max_epochs=2, progress=False, device="cpu")
    np.testing.assert_array_equal(model.trained_rows, np.flatnonzero(~held_out))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="model was trained", category=UserWarning)
        out = sne.tl.predict_perturbation(toy_adata, "condition", predict_for="C", model=model,
                                          inplace=False, progress=False, **PERTURB)
    assert out.n_obs == 60
