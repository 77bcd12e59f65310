"""Populations: sne.pp.populations, edits within populations, and the input layer."""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import assert_unchanged, snapshot

import sc_neuronedit as sne
from sc_neuronedit import metrics

INPUT = dict(edit_layer="input", progress=False, device="cpu")
PERTURB = dict(control="control", perturbed="treated", groupby="cell_type")


@pytest.fixture
def confined():
    """3 cell types x 2 populations x 2 conditions. Populations differ in features 1-4;
    feature 0 has the same distribution in both, and treatment adds +3 to it in
    population 'P' only: a response that pooling dilutes."""
    rng = np.random.default_rng(0)
    blocks, obs = [], []
    for ct in ("A", "B", "C"):
        for pop, offset in (("P", 2.0), ("Q", -2.0)):
            for cond in ("control", "treated"):
                x = rng.normal(0, 1, size=(80, 6))
                x[:, 1:5] += offset
                if cond == "treated" and pop == "P":
                    x[:, 0] += 3.0
                blocks.append(x)
                obs += [(ct, pop, cond)] * 80
    obs = pd.DataFrame(obs, columns=["cell_type", "population", "condition"]).astype("category")
    obs.index = [f"c{i}" for i in range(len(obs))]
    return ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs,
                      var=pd.DataFrame(index=[f"f{j}" for j in range(6)]))


def _shift(adata, key, pop):
    rows = adata.obs[f"{key}_edited"].to_numpy() & (adata.obs["population"] == pop).to_numpy()
    return float((adata.layers[key][rows, 0] - adata.X[rows, 0]).mean())


@pytest.mark.parametrize("edit_layer", ["input", "bottleneck"])
def test_confined_response_is_recovered_within_populations_and_diluted_pooled(confined, edit_layer):
    opts = dict(edit_layer=edit_layer, progress=False, device="cpu", random_state=0, max_epochs=30,
                model_kwargs=None if edit_layer == "input" else dict(hidden=(32,), n_latent=8))
    if edit_layer == "input":
        del opts["max_epochs"], opts["model_kwargs"]
    sne.tl.predict_perturbation(confined, "condition", predict_for="C", key_added="pooled",
                                **PERTURB, **opts)
    sne.tl.predict_perturbation(confined, "condition", predict_for="C", key_added="within",
                                population_key="population", **PERTURB, **opts)
    within = _shift(confined, "within", "P"), _shift(confined, "within", "Q")
    pooled = _shift(confined, "pooled", "P"), _shift(confined, "pooled", "Q")
    tol = 0.3 if edit_layer == "input" else 0.6
    assert abs(within[0] - 3.0) < tol and abs(within[1]) < tol, (within, pooled)
    # pooled: the response is spread over both populations (through the autoencoder, the
    # residual edit's level bins give back part of it, so the margin is smaller there)
    margin = 0.7 if edit_layer == "input" else 0.4
    assert pooled[0] < within[0] - margin and pooled[1] > within[1] + margin, (within, pooled)
    assert list(confined.uns["within"]["populations"]["own"]) == ["P", "Q"]


def test_input_layer_is_a_per_feature_quantile_map(confined):
    """edit_layer="input": x + interp(x, s, t - s) per feature, with s and t the Hazen
    quantiles of the source and target cells (end shifts held outside the range)."""
    src = ((confined.obs["condition"] == "control") & (confined.obs["cell_type"] != "C")).to_numpy()
    tgt = ((confined.obs["condition"] == "treated") & (confined.obs["cell_type"] != "C")).to_numpy()
    apply = ((confined.obs["condition"] == "control") & (confined.obs["cell_type"] == "C")).to_numpy()
    out = sne.tl.neuron_edit(confined, src, tgt, apply_to=apply, inplace=False, **INPUT)
    X = confined.X.astype(np.float64)
    probs = np.linspace(0, 1, 100)
    expected = np.empty((apply.sum(), X.shape[1]))
    for j in range(X.shape[1]):
        s = np.quantile(X[src, j], probs, method="hazen")
        t = np.quantile(X[tgt, j], probs, method="hazen")
        expected[:, j] = X[apply, j] + np.interp(X[apply, j], s, t - s)
    np.testing.assert_allclose(out.X, expected, atol=1e-4)
    assert confined.uns == {}  # inplace=False writes nothing
    assert out.uns["neuron_edit"]["params"]["edit_layer"] == "input"
    assert len(out.uns["neuron_edit"]["history"]["train_loss"]) == 0  # nothing was trained


def test_small_population_falls_back_to_the_pooled_edit_and_says_so(confined):
    # 'R': 15 treated and 15 control cells of types A and B -- below the minimum of 20.
    obs = confined.obs
    rows = np.flatnonzero(((obs["population"] == "Q") & (obs["cell_type"] != "C")).to_numpy())
    pops = confined.obs["population"].astype(str).to_numpy()
    picked = np.concatenate([rows[confined.obs["condition"].to_numpy()[rows] == c][:15]
                             for c in ("control", "treated")])
    pops[picked] = "R"
    confined.obs["pop"] = pops
    with pytest.warns(UserWarning, match=r"'R' \(15 source and 15 target cells"):
        sne.tl.predict_perturbation(confined, "condition", predict_for="C", population_key="pop",
                                    **PERTURB, **INPUT)
    record = confined.uns["predicted_perturbation"]["populations"]
    assert "R" in record["fallback"] and "at least 20" in record["fallback"]["R"]
    assert sorted(record["own"]) == ["P", "Q"]


def test_population_only_in_the_cells_to_edit_is_named_and_falls_back(confined):
    pops = confined.obs["population"].astype(str).to_numpy()
    new = ((confined.obs["cell_type"] == "C") & (confined.obs["population"] == "Q")).to_numpy()
    pops[new] = "new"
    confined.obs["pop"] = pops
    with pytest.warns(UserWarning, match=r"'new' \(80 cells\)"):
        sne.tl.predict_perturbation(confined, "condition", predict_for="C", population_key="pop",
                                    key_added="k", **PERTURB, **INPUT)
    record = confined.uns["k"]["populations"]
    assert record["fallback"]["new"] == "no source or target cells"
    rows = confined.obs["k_edited"].to_numpy() & new
    pooled = sne.tl.predict_perturbation(confined, "condition", predict_for="C", inplace=False,
                                         **PERTURB, **INPUT)
    # the 'new' cells took exactly the pooled edit
    np.testing.assert_allclose(confined.layers["k"][rows],
                               pooled.X[new[confined.obs["k_edited"].to_numpy()]], atol=1e-6)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(population_key="lineage"), KeyError, "population_key='lineage' is not a column"),
    (dict(population_key="cell_type"), ValueError, "population_key and groupby are both"),
    (dict(edit_layer="latent"), ValueError, "edit_layer must be"),
])
def test_bad_population_input_is_named_and_nothing_changes(confined, kwargs, error, message):
    snap = snapshot(confined)
    with pytest.raises(error, match=message):
        sne.tl.predict_perturbation(confined, "condition", predict_for="C", **PERTURB,
                                    progress=False, device="cpu", **kwargs)
    assert_unchanged(confined, snap)


def test_missing_population_label_is_an_error(confined):
    confined.obs["pop"] = confined.obs["population"].astype(object)
    confined.obs.iloc[:3, confined.obs.columns.get_loc("pop")] = np.nan
    with pytest.raises(ValueError, match="3 cells without a population"):
        sne.tl.predict_perturbation(confined, "condition", predict_for="C", population_key="pop",
                                    **PERTURB, **INPUT)


def test_model_of_another_layer_is_refused(confined):
    model = sne.NeuronEditor(confined, hidden=(8,), n_latent=4).train(max_epochs=1, progress=False)
    with pytest.raises(ValueError, match="edit_layer='input' but the model edits layer 1"):
        sne.tl.predict_perturbation(confined, "condition", predict_for="C", model=model, **PERTURB,
                                    **INPUT)


def test_populations_assign_every_cell_from_a_fit_on_subset():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [6, 0], [0, 6]], dtype=float)
    X = np.vstack([rng.normal(c, 0.5, size=(n, 2)) for c, n in zip(centres, (300, 200, 100))])
    X = np.hstack([X, rng.normal(size=(len(X), 1))]).astype(np.float32)  # + a marker not used
    adata = ad.AnnData(X, var=pd.DataFrame(index=["m1", "m2", "state"]))
    adata.obs_names = [f"c{i}" for i in range(len(X))]
    fit = np.arange(len(X)) % 2 == 0  # half of the cells
    sne.pp.populations(adata, ["m1", "m2"], 3, fit_on=fit)
    labels = adata.obs["population"]
    assert labels.cat.categories.tolist() == ["0", "1", "2"]
    truth = np.repeat([0, 1, 2], (300, 200, 100))  # named by size: the largest is "0"
    assert (labels.astype(int).to_numpy() == truth).all()
    centroids = adata.uns["population"]["centroids"]
    assert centroids.columns.tolist() == ["m1", "m2"]
    np.testing.assert_allclose(centroids.to_numpy(), centres, atol=0.15)
    with pytest.raises(KeyError, match="markers: names not in adata.var_names"):
        sne.pp.populations(adata, ["CD20"], 3)
    with pytest.raises(ValueError, match="n_clusters must be an integer of at least 2"):
        sne.pp.populations(adata, ["m1"], 1)


def test_populations_on_bcrxl_separate_b_cells(tmp_path):
    """Real data: k-means on the 10 type markers puts the gated B cells (CD20 > 3)
    mostly into one population, and the result survives an .h5ad round trip."""
    adata = sne.datasets.bodenmiller_bcrxl()
    sne.pp.arcsinh(adata, 5)
    sne.pp.populations(adata, adata.var["marker_class"] == "type", 10, layer="arcsinh")
    b_cells = adata.layers["arcsinh"][:, adata.var_names.get_loc("CD20")] > 3
    share = adata.obs["population"][b_cells].value_counts(normalize=True)
    assert share.iloc[0] > 0.8
    adata.write_h5ad(tmp_path / "p.h5ad")
    back = ad.read_h5ad(tmp_path / "p.h5ad")
    pd.testing.assert_frame_equal(back.uns["population"]["centroids"], adata.uns["population"]["centroids"])


def test_within_populations_beats_pooled_on_bcrxl_b_cells():
    """Real data, the input layer (no training): BCR cross-linking acts on B cells, so
    B-cell state markers of a held-out patient are predicted better within populations."""
    adata = sne.datasets.bodenmiller_bcrxl()
    sne.pp.arcsinh(adata, 5)
    held = "Patient1"
    unseen = ((adata.obs["patient_id"] == held) & (adata.obs["condition"] == "BCRXL")).to_numpy()
    sne.pp.populations(adata, adata.var["marker_class"] == "type", 10, layer="arcsinh", fit_on=~unseen)
    opts = dict(control="Ref", perturbed="BCRXL", groupby="patient_id", predict_for=held,
                layer="arcsinh", inplace=False, **INPUT)
    pooled = sne.tl.predict_perturbation(adata, "condition", **opts)
    within = sne.tl.predict_perturbation(adata, "condition", population_key="population", **opts)
    X, names = adata.layers["arcsinh"], adata.var_names
    state = (adata.var["marker_class"] == "state").to_numpy()
    real = X[unseen]
    real_b = real[real[:, names.get_loc("CD20")] > 3]
    ref = ((adata.obs["patient_id"] == held) & (adata.obs["condition"] == "Ref")).to_numpy()
    ctrl_b = X[ref][:, names.get_loc("CD20")] > 3  # predicted cells gated on their Ref values
    emd = {name: metrics.emd_per_feature(np.asarray(p.X)[ctrl_b][:, state], real_b[:, state]).mean()
           for name, p in (("pooled", pooled), ("within", within))}
    assert emd["within"] < 0.85 * emd["pooled"], emd


def test_model_level_populations_with_matrices_take_labels_per_side():
    gen = np.random.default_rng(0)
    source = gen.normal(size=(100, 4)).astype(np.float32)
    target = source + np.where(np.arange(100) < 50, 2.0, 0.0)[:, None].astype(np.float32)
    labels = np.where(np.arange(100) < 50, "a", "b")
    model = sne.NeuronEditor(np.vstack([source, target]), edit_layer="input").train(progress=False)
    edit = model.learn_edit(source, target, populations=(labels, labels))
    out = model.apply_edit(source, edit, populations=labels)
    np.testing.assert_allclose((out - source)[:50].mean(), 2.0, atol=0.05)
    np.testing.assert_allclose((out - source)[50:].mean(), 0.0, atol=0.05)
    with pytest.raises(ValueError, match="learned within populations: pass populations="):
        model.apply_edit(source, edit)
    with pytest.raises(ValueError, match="give populations per side"):
        model.learn_edit(source, target, populations=np.r_[labels, labels])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.apply_edit(source, edit, populations=labels)
