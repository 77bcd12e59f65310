"""The engine without AnnData: plain arrays give what the AnnData tools give."""

import numpy as np
import pytest
import torch
from scipy import sparse

import sc_neuronedit as sne

MODEL = dict(hidden=(32,), n_latent=8)
TRAIN = dict(max_epochs=5, batch_size=32)


def array_edit(X, source, target, apply_to, *, decode="edited_residual", mask_var=None,
               random_state=0):
    """What ``tl.neuron_edit`` does, through the array API only."""
    model = sne.NeuronEditor(X, mask_var=mask_var, **MODEL).train(
        cells=source | target | apply_to, random_state=random_state, device="cpu",
        progress=False, **TRAIN)
    edit = model.learn_edit(source, target, residual=decode == "edited_residual",
                            random_state=random_state)
    return model.apply_edit(apply_to, edit, decode=decode)


def masks(adata):
    cond, ct = adata.obs.condition.to_numpy(), adata.obs.cell_type.to_numpy()
    source = (cond == "control") & (ct != "C")
    target = (cond == "treated") & (ct != "C")
    apply_to = (cond == "control") & (ct == "C")
    return source, target, apply_to


@pytest.mark.parametrize("decode", sne.NeuronEditor.decode_forms)
def test_arrays_match_tl_neuron_edit(toy_adata, decode):
    source, target, apply_to = masks(toy_adata)
    sne.tl.neuron_edit(
        toy_adata, {"condition": "control", "cell_type": ["A", "B"]},
        {"condition": "treated", "cell_type": ["A", "B"]},
        apply_to={"condition": "control", "cell_type": "C"}, decode=decode,
        model_kwargs=MODEL, train_kwargs=TRAIN, device="cpu", random_state=1, progress=False,
    )
    layer = toy_adata.layers["neuron_edit"]
    np.testing.assert_array_equal(toy_adata.obs["neuron_edit_edited"].to_numpy(), apply_to)
    pred = array_edit(np.asarray(toy_adata.X), source, target, apply_to, decode=decode,
                      random_state=1)
    assert pred.shape == (apply_to.sum(), toy_adata.n_vars)
    np.testing.assert_allclose(layer[apply_to], pred, rtol=0, atol=1e-6)
    if decode == "edited_residual":
        # the edit did something: treated adds +2 to the first five genes (after 5 epochs the
        # decoder has barely moved, so only the edited residual carries the effect this far)
        gain = pred[:, :5].mean() - np.asarray(toy_adata.X)[apply_to][:, :5].mean()
        assert gain > 1.0


def test_arrays_match_tl_neuron_edit_with_mask_var(toy_adata):
    source, target, apply_to = masks(toy_adata)
    sne.tl.neuron_edit(toy_adata, source, target, apply_to=apply_to, mask_var="hv",
                       model_kwargs=MODEL, train_kwargs=TRAIN, device="cpu", progress=False)
    pred = array_edit(np.asarray(toy_adata.X), source, target, apply_to,
                      mask_var=toy_adata.var["hv"].to_numpy())
    np.testing.assert_allclose(toy_adata.layers["neuron_edit"][apply_to], pred, rtol=0, atol=1e-6)
    # features outside the mask pass through unchanged
    np.testing.assert_array_equal(pred[:, 20:], np.asarray(toy_adata.X)[apply_to][:, 20:])


def test_numpy_and_torch_inputs_agree(toy_adata):
    X = np.asarray(toy_adata.X)
    source, target, apply_to = masks(toy_adata)
    m_np = sne.NeuronEditor(X, **MODEL).train(random_state=0, device="cpu", progress=False, **TRAIN)
    m_pt = sne.NeuronEditor(torch.from_numpy(X), **MODEL).train(
        random_state=0, device="cpu", progress=False, **TRAIN)
    for p, q in zip(m_np.network.parameters(), m_pt.network.parameters()):
        assert torch.equal(p, q)
    e_np = m_np.learn_edit(source, target)
    e_pt = m_pt.learn_edit(torch.from_numpy(source), torch.from_numpy(target))  # bool tensors
    np.testing.assert_allclose(e_np.neurons.target_knots, e_pt.neurons.target_knots, atol=0)
    ref = m_np.apply_edit(apply_to, e_np)
    # the cells as a mask, a boolean tensor, a numpy matrix and a torch matrix
    for cells in (torch.from_numpy(apply_to), X[apply_to], torch.from_numpy(X[apply_to])):
        np.testing.assert_allclose(m_pt.apply_edit(cells, e_pt), ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(m_pt.encode(torch.from_numpy(X[apply_to])), m_np.encode(apply_to),
                               atol=1e-6)


def test_index_arrays_and_masks_agree(toy_adata):
    X = np.asarray(toy_adata.X)
    source, target, apply_to = masks(toy_adata)
    model = sne.NeuronEditor(X, **MODEL).train(random_state=0, device="cpu", progress=False, **TRAIN)
    e_mask = model.learn_edit(source, target)
    e_idx = model.learn_edit(np.flatnonzero(source), np.flatnonzero(target)[::-1])  # order ignored
    np.testing.assert_array_equal(e_mask.neurons.source_knots, e_idx.neurons.source_knots)
    np.testing.assert_array_equal(e_mask.neurons.target_knots, e_idx.neurons.target_knots)
    ref = model.apply_edit(apply_to, e_mask)
    np.testing.assert_array_equal(model.apply_edit(np.flatnonzero(apply_to), e_idx), ref)
    np.testing.assert_array_equal(model.apply_edit(torch.from_numpy(np.flatnonzero(apply_to)),
                                                   e_idx), ref)
    # the same through AnnData, where integer indices were already accepted
    m_ad = sne.NeuronEditor(toy_adata, **MODEL).train(random_state=0, device="cpu", progress=False,
                                                      **TRAIN)
    e_ad = m_ad.learn_edit(np.flatnonzero(source), np.flatnonzero(target))
    np.testing.assert_allclose(m_ad.apply_edit(np.flatnonzero(apply_to), e_ad), ref, atol=1e-6)


def test_sparse_and_float64_arrays(toy_adata):
    X = np.maximum(np.asarray(toy_adata.X), 0)
    source, target, apply_to = masks(toy_adata)
    preds = []
    for data in (X, X.astype(np.float64), sparse.csr_matrix(X)):
        preds.append(array_edit(data, source, target, apply_to))
    for p in preds[1:]:
        np.testing.assert_allclose(p, preds[0], rtol=0, atol=1e-5)


def test_array_selection_errors(toy_adata):
    X = np.asarray(toy_adata.X)
    model = sne.NeuronEditor(X, **MODEL).train(random_state=0, device="cpu", progress=False,
                                               max_epochs=1)
    n = X.shape[0]
    with pytest.raises(TypeError, match="without AnnData"):
        model.encode({"condition": "control"})
    with pytest.raises(TypeError, match=f"boolean mask over the {n} rows"):
        model.encode(np.ones(n - 1, dtype=bool))
    with pytest.raises(IndexError, match="out of range"):
        model.encode(np.array([0, n]))
    with pytest.raises(ValueError, match="columns"):
        model.encode(X[:, :5])
    model.learn_edit(np.arange(10), np.arange(10, 20), groupby=np.zeros(n))  # labels per row: fine
    with pytest.raises(ValueError, match="groupby= needs source and target given as cells"):
        model.learn_edit(X[:10], X[10:20], groupby=np.zeros(n))
    with pytest.raises(ValueError, match="one label per row of the data"):
        model.learn_edit(np.arange(10), np.arange(10, 20), groupby=np.zeros(3))
    with pytest.raises(ValueError, match="layer= only applies"):
        sne.NeuronEditor(X, layer="counts")
