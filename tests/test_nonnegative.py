"""nonnegative=: predictions of features without negative inputs stay usable by scanpy."""

import numpy as np
import pytest

import sc_neuronedit as sne

FAST = dict(max_epochs=3, progress=False, device="cpu", model_kwargs=dict(hidden=(32,), n_latent=8))
PERTURB = dict(control="control", perturbed="treated", groupby="cell_type", predict_for="C")


@pytest.fixture
def sparse_like(toy_adata):
    """Toy data floored at zero (~50 % exact zeros, like expression); gene 29 keeps its negatives."""
    X = toy_adata.X
    X[:, :29] = np.maximum(X[:, :29], 0)
    return toy_adata


def _predict(adata, **kw):
    return sne.tl.predict_perturbation(adata, "condition", inplace=False, **PERTURB, **FAST, **kw).X


def test_policies_on_a_perturbation(sparse_like):
    off, clip, keep = (_predict(sparse_like, nonnegative=p) for p in ("off", "clip", "keep_zeros"))
    assert (off[:, :29] < 0).mean() > 0.05  # what the decoder gives, so the policy has work
    np.testing.assert_array_equal(clip[:, :29], np.maximum(off[:, :29], 0))
    ctrl_c = sparse_like.X[(sparse_like.obs.cell_type == "C") & (sparse_like.obs.condition == "control")]
    np.testing.assert_array_equal(keep[:, :29], np.where(ctrl_c[:, :29] == 0, 0, clip[:, :29]))
    # a feature with negative input values is never touched
    for out in (clip, keep):
        np.testing.assert_array_equal(out[:, 29], off[:, 29])
    assert (off[:, 29] < 0).any()


def test_default_is_clip_and_recorded(sparse_like):
    sne.tl.neuron_edit(sparse_like, {"condition": "control"}, {"condition": "treated"},
                       apply_to={"cell_type": "C"}, **FAST)
    assert sparse_like.layers["neuron_edit"][:, :29].min() >= 0
    assert sparse_like.uns["neuron_edit"]["params"]["nonnegative"] == "clip"


def test_combination_routes_and_synergy_follow_the_policy(sparse_like):
    obs = sparse_like.obs
    pairs = {("A", "control"): "control", ("B", "control"): "A", ("C", "control"): "B"}
    obs["drug"] = [pairs.get((ct, c), "A+B") for ct, c in zip(obs.cell_type, obs.condition)]
    sne.tl.predict_combination(sparse_like, "drug", control="control", drug_a="A", drug_b="B",
                               **FAST)
    edited = sparse_like.obs["combination_edited"].to_numpy()
    assert sparse_like.layers["combination"][edited][:, :29].min() >= 0
    sne.tl.synergy(sparse_like, "drug", control="control", combinations={"A+B": ("A", "B")},
                   n_resamples=2, **FAST)
    assert sparse_like.uns["synergy"]["params"]["nonnegative"] == "clip"


def test_batch_correct_keep_zeros_is_the_old_keep_zeros(sparse_like):
    # the bottleneck: its decoder is what spreads zeros and makes negatives
    kw = dict(reference_key="cell_type", reference_value="A", edit_layer="bottleneck", **FAST)
    new = sne.tl.batch_correct(sparse_like, "condition", inplace=False, **kw).X
    with pytest.warns(FutureWarning, match=r"keep_zeros= is deprecated; pass nonnegative='keep_zeros'"):
        old = sne.tl.batch_correct(sparse_like, "condition", inplace=False, keep_zeros=True, **kw).X
    np.testing.assert_array_equal(new, old)
    assert np.all(new[sparse_like.X == 0] == 0)
    with pytest.warns(FutureWarning, match="nonnegative='off'"):
        off = sne.tl.batch_correct(sparse_like, "condition", inplace=False, keep_zeros=False, **kw).X
    assert (off[:, :29] < 0).any()
    with pytest.raises(ValueError, match=r"keep_zeros=True contradicts nonnegative='off'"):
        sne.tl.batch_correct(sparse_like, "condition", keep_zeros=True, nonnegative="off", **kw)
