import itertools

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import assert_unchanged, snapshot
from scipy import sparse

import sc_neuronedit as sne
from sc_neuronedit import metrics

FAST = dict(progress=False, device="cpu", model_kwargs=dict(hidden=(32,), n_latent=8))


@pytest.fixture
def batches():
    """Batch 'b' = batch 'a' with a non-linear distortion x -> 1.3 x + 0.5 on 4 of 6 markers.

    Each batch holds a reference sample and a second sample (another donor,
    shifted by +1 on marker 5) that the edit never sees.
    """
    rng = np.random.default_rng(0)
    blocks, obs = [], []
    for batch in ("a", "b"):
        for ref in (True, False):
            x = rng.normal(2, 0.6, size=(300, 6)) + (0 if ref else np.eye(6)[5])
            if batch == "b":
                x[:, :4] = 1.3 * x[:, :4] + 0.5
            blocks.append(x)
            obs += [(batch, ref)] * 300
    obs = pd.DataFrame(obs, columns=["batch", "reference"])
    obs["batch"] = obs["batch"].astype("category")
    obs.index = [f"c{i}" for i in range(len(obs))]
    return ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs)


def test_arcsinh_layer_in_layer_out():
    a = ad.AnnData(np.array([[0.0, 5.0, -5.0]], dtype=np.float32))
    sne.pp.arcsinh(a, 5)
    np.testing.assert_allclose(a.layers["arcsinh"], np.arcsinh([[0, 1, -1]]), rtol=1e-6)
    np.testing.assert_array_equal(a.X, [[0, 5, -5]])  # input kept
    s = ad.AnnData(sparse.csr_matrix(a.X))
    sne.pp.arcsinh(s, 5, key_added=None)
    np.testing.assert_allclose(s.X.toarray(), np.arcsinh([[0, 1, -1]]), rtol=1e-6)
    with pytest.raises(ValueError, match="cofactor must be positive"):
        sne.pp.arcsinh(a, 0)


def test_known_distortion_is_removed_and_donor_kept(batches):
    sne.tl.batch_correct(batches, "batch", reference_key="reference", reference_value=True,
                         reference_batch="a", max_epochs=80, train_kwargs=dict(lr=1e-2), **FAST)
    out = batches.layers["batch_corrected"]
    b, ref = batches.obs.batch.to_numpy(), batches.obs.reference.to_numpy()
    np.testing.assert_array_equal(out[b == "a"], batches.X[b == "a"])  # the goal batch is kept
    held = ~ref  # the second donor, never used by an edit
    before = metrics.emd_per_feature(batches.X[held & (b == "a")], batches.X[held & (b == "b")])
    after = metrics.emd_per_feature(out[held & (b == "a")], out[held & (b == "b")])
    assert before[:4].mean() > 1.0 and after[:4].mean() < 0.3 * before[:4].mean()
    gap = metrics.emd_per_feature(out[ref & (b == "b")], out[held & (b == "b")])[5]
    assert gap > 0.6  # the donor difference (+1 on marker 5) survives
    uns = batches.uns["batch_corrected"]
    assert set(uns["batches"]) == {"b"} and uns["batches"]["b"]["n_reference"] == 300


def test_pooled_goal_corrects_every_batch(batches):
    sne.tl.batch_correct(batches, "batch", reference_key="reference", reference_value=True,
                         max_epochs=3, **FAST)
    assert batches.obs["batch_corrected_edited"].all()
    assert set(batches.uns["batch_corrected"]["batches"]) == {"a", "b"}


def test_missing_reference_is_an_error(batches):
    drop = (batches.obs.batch == "b") & batches.obs.reference
    sub = batches[~drop.to_numpy()].copy()
    snap = snapshot(sub)
    with pytest.raises(ValueError, match=r"fewer than 50 reference cells.*'b': 0"):
        sne.tl.batch_correct(sub, "batch", reference_key="reference", reference_value=True, **FAST)
    with pytest.raises(ValueError, match="reference_batch='z' not in"):
        sne.tl.batch_correct(sub, "batch", reference_key="reference", reference_value=True,
                             reference_batch="z", **FAST)
    assert_unchanged(sub, snap)
    only_a = batches[(batches.obs.batch == "a").to_numpy()].copy()
    snap = snapshot(only_a)
    with pytest.raises(ValueError, match="holds only the reference batch 'a'"):
        sne.tl.batch_correct(only_a, "batch", reference_key="reference", reference_value=True,
                             reference_batch="a", **FAST)
    assert_unchanged(only_a, snap)


def test_gates_held_out_volunteer_gets_closer_across_batches():
    adata = sne.datasets.data_dir() / "cytonorm_gates.h5ad"
    adata = ad.read_h5ad(adata)
    sne.pp.arcsinh(adata, 5)
    mk = adata.var["marker"].astype(str)
    markers = ((mk != "") & ~mk.str.match(r"^BC\d$") & ~mk.isin(["DNA1", "DNA2", "beadDist"])
               & adata.var_names.str.endswith("Di")).to_numpy()
    adata.var["marker_channel"] = markers
    sne.tl.batch_correct(adata, "batch", reference_key="reference", reference_value=True,
                         layer="arcsinh", mask_var="marker_channel", max_epochs=10,
                         random_state=0, progress=False)
    v2, b = ~adata.obs["reference"].to_numpy(), adata.obs["batch"].to_numpy()
    cols = np.flatnonzero(markers)

    def worst_pair_emd(layer):
        X = adata.layers[layer][:, cols]
        return np.mean([max(metrics.emd_per_feature(X[v2 & (b == p)][:, [j]], X[v2 & (b == q)][:, [j]])[0]
                            for p, q in itertools.combinations(np.unique(b), 2))
                        for j in range(len(cols))])

    assert worst_pair_emd("batch_corrected") < 0.85 * worst_pair_emd("arcsinh")
    # channels outside mask_var pass through untouched
    np.testing.assert_array_equal(adata.layers["batch_corrected"][:, ~markers],
                                  adata.layers["arcsinh"][:, ~markers])


@pytest.fixture
def distorted():
    """Known truth: three batches, each distorting markers by its own non-linear, marker-wise map.

    The reference sample holds populations A and B; the second sample also holds C, which
    no reference cell resembles. Batch effects are intensity changes on raw counts,
    x -> arcsinh(k sinh x) in arcsinh units, plus one power law.
    """
    rng = np.random.default_rng(0)
    means = {"A": [3, 3, 3, .5, .5, .5], "B": [.5, .5, .5, 3, 3, 3], "C": [4, .5, 3.5, .5, 3.5, 1.5]}
    truth, obs = [], []
    for batch in "abc":
        for ref, types in ((True, "AB"), (False, "ABC")):
            for t in types:
                truth.append(np.clip(rng.normal(means[t], 0.4, size=(150, 6)), 0, None))
                obs += [(batch, ref, t)] * 150
    truth = np.vstack(truth).astype(np.float32)
    obs = pd.DataFrame(obs, columns=["batch", "reference", "type"]).set_axis(
        [f"c{i}" for i in range(len(obs))])
    X = truth.copy()
    b = obs["batch"].to_numpy()
    X[b == "b", :4] = np.arcsinh(1.8 * np.sinh(X[b == "b", :4]))
    X[b == "b", 4] **= 1.2
    X[b == "c", 2:] = np.arcsinh(0.5 * np.sinh(X[b == "c", 2:]))
    X[b == "c", 0] *= 1.2
    return ad.AnnData(X, obs=obs), truth


def test_population_absent_from_reference_lands_near_its_truth(distorted):
    adata, truth = distorted
    sne.tl.batch_correct(adata, "batch", reference_key="reference", reference_value=True,
                         reference_batch="a", progress=False, device="cpu", edit_layer="bottleneck",
                         model_kwargs=dict(hidden=(128,), n_latent=16))
    b, t = adata.obs["batch"].to_numpy(), adata.obs["type"].to_numpy()
    unseen = (t == "C") & (b != "a")

    def rmse(M):
        return np.sqrt(np.mean((M[unseen] - truth[unseen]) ** 2))

    before, after = rmse(adata.X), rmse(adata.layers["batch_corrected"])
    # measured: 0.58 -> 0.25 (0.23 with the default, larger network). A per-batch quantile
    # map of the reference reaches 0.09 here: marker-wise distortions are exactly its model.
    assert after < 0.5 * before
    assert np.all(adata.layers["batch_corrected"] >= 0)  # keep_zeros: no value below zero


def test_keep_zeros_and_calibration(distorted):
    adata, _ = distorted
    adata.X[:50, 1] = 0
    ref, b = adata.obs["reference"].to_numpy(), adata.obs["batch"].to_numpy()
    sne.tl.batch_correct(adata, "batch", reference_key="reference", reference_value=True,
                         calibrate=True, edit_layer="bottleneck", max_epochs=5, **FAST)
    out = adata.layers["batch_corrected"]
    assert np.all(out[:50, 1] == 0)
    # calibrated: each batch's reference cells match the pooled reference, marker by marker
    emd = [metrics.emd_per_feature(out[ref & (b == "b")], out[ref & (b == "c")]).max()]
    raw = [metrics.emd_per_feature(adata.X[ref & (b == "b")], adata.X[ref & (b == "c")]).max()]
    assert emd[0] < 0.1 < raw[0]
    assert adata.uns["batch_corrected"]["params"]["calibrate"] is True
