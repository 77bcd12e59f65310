import numpy as np
import pytest
import torch
from scipy import sparse

import sc_neuronedit as sne

SMALL = dict(hidden=(32,), n_latent=8)
FAST = dict(max_epochs=5, batch_size=32, progress=False, device="cpu")


def weights(model):
    return [p.detach().clone() for p in model.network.parameters()]


def test_same_seed_is_bit_identical(toy_adata):
    a = sne.NeuronEditor(toy_adata, **SMALL).train(random_state=3, **FAST)
    b = sne.NeuronEditor(toy_adata, **SMALL).train(random_state=3, **FAST)
    c = sne.NeuronEditor(toy_adata, **SMALL).train(random_state=4, **FAST)
    for p, q in zip(weights(a), weights(b)):
        assert torch.equal(p, q)
    assert not all(torch.equal(p, q) for p, q in zip(weights(a), weights(c)))
    assert a.history.train_loss == b.history.train_loss


def test_training_reduces_loss_and_keeps_history(toy_adata):
    model = sne.NeuronEditor(toy_adata, **SMALL).train(random_state=0, **{**FAST, "max_epochs": 40})
    h = model.history
    assert len(h.train_loss) == len(h.validation_loss) <= 40
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
    assert 0 <= h.best_epoch < len(h.train_loss)


def test_early_stopping_restores_best(toy_adata):
    model = sne.NeuronEditor(toy_adata, **SMALL).train(
        random_state=0, patience=2, lr=0.3, **{**FAST, "max_epochs": 60})
    h = model.history
    assert h.stopped_early and len(h.train_loss) == h.best_epoch + 3


def test_sparse_and_dense_agree(toy_adata):
    sp = toy_adata.copy()
    sp.X = sparse.csr_matrix(np.maximum(sp.X, 0))
    de = sp.copy()
    de.X = sp.X.toarray()
    m_sp = sne.NeuronEditor(sp, **SMALL).train(random_state=0, **FAST)
    m_de = sne.NeuronEditor(de, **SMALL).train(random_state=0, **FAST)
    sel = {"condition": "control"}
    edit = m_de.learn_edit(sel, {"condition": "treated"})
    np.testing.assert_allclose(m_sp.apply_edit(sel, edit), m_de.apply_edit(sel, edit), atol=1e-5)


def test_arrays_and_anndata_give_the_same_edit(toy_adata):
    m_ad = sne.NeuronEditor(toy_adata, **SMALL).train(random_state=0, **FAST)
    m_np = sne.NeuronEditor(toy_adata.X, **SMALL).train(random_state=0, **FAST)
    ctrl = (toy_adata.obs.condition == "control").to_numpy()
    e_ad = m_ad.learn_edit({"condition": "control"}, {"condition": "treated"})
    e_np = m_np.learn_edit(ctrl, ~ctrl)
    np.testing.assert_allclose(m_ad.apply_edit(ctrl, e_ad), m_np.apply_edit(toy_adata.X[ctrl], e_np),
                               atol=1e-6)


def test_residual_and_plain_decode(toy_adata):
    model = sne.NeuronEditor(toy_adata, **SMALL).train(random_state=0, **FAST)
    sel = {"condition": "control"}
    identity = model.learn_edit(sel, sel)
    # an identity edit returns the input exactly in residual form, the reconstruction in plain
    np.testing.assert_allclose(model.apply_edit(sel, identity), toy_adata[toy_adata.obs.condition ==
                               "control"].X, atol=1e-5)
    recon = model.decode(model.encode(sel))
    np.testing.assert_allclose(model.apply_edit(sel, identity, decode="plain"), recon, atol=1e-5)
    with pytest.raises(ValueError, match="decode must be"):
        model.apply_edit(sel, identity, decode="nope")


def test_mask_var_passes_other_features_through(toy_adata):
    model = sne.NeuronEditor(toy_adata, mask_var="hv", **SMALL)
    model.train(random_state=0, **{**FAST, "max_epochs": 80})
    assert model.n_features == 20
    sel = {"condition": "control"}
    out = model.apply_edit(sel, model.learn_edit(sel, {"condition": "treated"}))
    X = toy_adata[(toy_adata.obs.condition == "control").to_numpy()].X
    np.testing.assert_array_equal(out[:, 20:], X[:, 20:])
    assert np.abs(out[:, :5] - X[:, :5]).mean() > 1.0


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_any_hidden_layer_can_be_edited(toy_adata, layer):
    model = sne.NeuronEditor(toy_adata, hidden=(32,), n_latent=8, edit_layer=layer)
    model.train(random_state=0, **FAST)
    assert model.encode({"condition": "control"}).shape[1] == (32, 8, 32)[layer]
    with pytest.raises(ValueError, match="does not exist"):
        sne.NeuronEditor(toy_adata, hidden=(32,), n_latent=8, edit_layer=3)


def test_save_load_roundtrip(toy_adata, tmp_path):
    model = sne.NeuronEditor(toy_adata, mask_var="hv", **SMALL).train(random_state=0, **FAST)
    sel, tgt = {"condition": "control"}, {"condition": "treated"}
    edit = model.learn_edit(sel, tgt)
    model.save(tmp_path / "m")
    loaded = sne.NeuronEditor.load(tmp_path / "m", toy_adata, device="cpu")
    np.testing.assert_array_equal(loaded.apply_edit(sel, edit), model.apply_edit(sel, edit))
    assert loaded.history.train_loss == pytest.approx(model.history.train_loss)
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "m")


def test_load_checks_var_names(toy_adata, tmp_path):
    sne.NeuronEditor(toy_adata, **SMALL).train(random_state=0, **FAST).save(tmp_path / "m")
    other = toy_adata.copy()
    other.var_names = [f"x{i}" for i in range(other.n_vars)]
    with pytest.raises(ValueError, match="var names do not match"):
        sne.NeuronEditor.load(tmp_path / "m", other)
    with pytest.raises(FileNotFoundError):
        sne.NeuronEditor.load(tmp_path / "nothing", toy_adata)


def test_untrained_model_says_so(toy_adata):
    with pytest.raises(RuntimeError, match="train"):
        sne.NeuronEditor(toy_adata).encode()


def test_nan_in_training_data_is_rejected(toy_adata):
    toy_adata.X[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        sne.NeuronEditor(toy_adata, **SMALL).train(**FAST)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_backed_input_matches_in_memory(toy_adata, tmp_path, fmt):
    import anndata as ad

    if fmt == "csr":
        toy_adata.X = sparse.csr_matrix(np.maximum(toy_adata.X, 0))
    toy_adata.write_h5ad(tmp_path / "toy.h5ad")
    backed = ad.read_h5ad(tmp_path / "toy.h5ad", backed="r")
    sel, tgt = {"condition": "control"}, {"condition": "treated"}
    m_mem = sne.NeuronEditor(toy_adata, **SMALL).train(random_state=0, **FAST)
    m_bak = sne.NeuronEditor(backed, **SMALL).train(random_state=0, **FAST)
    edit = m_mem.learn_edit(sel, tgt)
    np.testing.assert_allclose(m_bak.apply_edit(sel, edit), m_mem.apply_edit(sel, edit), atol=1e-5)
    backed.file.close()


@pytest.mark.parametrize("mask_var", [["g0", "g1"], np.array([True, False]), np.array([1, 0, 1, 1]),
                                      np.zeros(4, bool)])
def test_array_input_mask_var_must_be_one_bool_per_column(mask_var):
    X = np.zeros((10, 4), np.float32)
    with pytest.raises(ValueError, match="boolean mask of 4 entries|selects no features"):
        sne.NeuronEditor(X, mask_var=mask_var)
    assert sne.NeuronEditor(X, mask_var=np.array([True, False, True, True])).n_features == 3


def test_chunked_epochs_visit_every_row_once_and_read_chunks_whole():
    from sc_neuronedit.nn._training import epoch_batches

    idx = np.random.default_rng(1).permutation(1000)[:700]
    batches = list(epoch_batches(idx, 32, np.random.default_rng(0), chunk_rows=100))
    assert sorted(np.concatenate([b for _, b in batches])) == sorted(idx)
    assert all(np.isin(b, c).all() and (np.diff(c) > 0).all() for c, b in batches)
    assert len({id(c) for c, _ in batches}) == 7  # 7 sequential reads of 100 rows
    # One chunk holding every row: the batches of the full permutation.
    full = [b for _, b in epoch_batches(idx, 32, np.random.default_rng(0), chunk_rows=None)]
    one = [b for _, b in epoch_batches(idx, 32, np.random.default_rng(0), chunk_rows=10_000)]
    assert all((a == b).all() for a, b in zip(full, one))


def test_backed_training_in_chunks_learns(toy_adata, tmp_path, monkeypatch):
    import anndata as ad

    import sc_neuronedit._fitting as fitting

    monkeypatch.setattr(fitting, "BACKED_CHUNK_ROWS", 64)  # 360 cells: 6 chunks
    toy_adata.X = sparse.csr_matrix(np.maximum(toy_adata.X, 0))
    toy_adata.write_h5ad(tmp_path / "toy.h5ad")
    backed = ad.read_h5ad(tmp_path / "toy.h5ad", backed="r")
    model = sne.NeuronEditor(backed, **SMALL).train(random_state=0, max_epochs=8, progress=False)
    losses = model.history.train_loss
    assert losses[-1] < losses[0] - 0.05  # it learns, from batches drawn within 6 chunks
    memory = sne.NeuronEditor(toy_adata, **SMALL).train(random_state=0, max_epochs=8, progress=False)
    assert abs(losses[-1] - memory.history.train_loss[-1]) < 0.1 * memory.history.train_loss[-1]
    backed.file.close()


@pytest.mark.parametrize(("mask", "bins"), [(False, 1), (True, 1), (False, None)])
def test_cpu_fast_path_gives_the_reference_prediction(kang, monkeypatch, mask, bins):
    # Real data: Kang's 6,998 genes (CSR), whose residuals are concentrated near 0 with
    # long tails. The folded weights, the sparse first layer and the compiled residual
    # edit must predict what the network's own passes do, in every decode form, for
    # sparse and dense input, with and without features the network does not see.
    from sc_neuronedit import _predict

    stim = (kang.obs["condition"] == "stimulated").to_numpy()
    mask_var = list(kang.var_names[::2]) if mask else None
    model = sne.NeuronEditor(kang, mask_var=mask_var, **SMALL).train(
        random_state=0, **{**FAST, "max_epochs": 1})
    edit = model.learn_edit(~stim, stim, **({} if bins is None else {"residual_bins": bins}))
    dense = kang.X[~stim].toarray()
    # Float rounding of the residual (a few ulps of the values) times the steepest
    # slope of the residual edit (thousands where source quantiles nearly tie)
    # bounds the difference; almost everywhere it is at float precision.
    src, tgt = edit.residual.source_knots, edit.residual.target_knots  # (bins, knots, genes)
    width, rise = torch.diff(src, dim=1), torch.diff(tgt, dim=1).abs().amax(dim=(0, 1))
    steepest = (rise / torch.where(width > 0, width, np.inf).amin(dim=(0, 1))).max()
    bound = {"edited_residual": 8 * 2.0**-23 * np.abs(dense).max() * (1 + float(steepest)),
             "residual": 1e-5, "plain": 1e-5}
    # With level bins, a decoded value within rounding of a bin edge may fall in the
    # neighbouring bin on the other path: the map jumps there, by at most the spread
    # of the knots. This one-epoch network decodes many genes to nearly one level, so
    # their edges lie within rounding of many values: up to 1 % of them may jump.
    jumps = edit.residual.n_bins > 1
    if jumps:
        bound["edited_residual"] += float(2 * (src.abs().max() + tgt.abs().max()))

    def assert_close(actual, desired, decode):
        diff = np.abs(actual - desired)
        rare = 1e-2 if jumps and decode == "edited_residual" else 1e-4
        assert diff.max() <= bound[decode] and np.quantile(diff, 1 - rare) <= 1e-5, decode

    for decode in ("edited_residual", "residual", "plain"):
        fast = model.apply_edit(~stim, edit, decode=decode)
        with monkeypatch.context() as patch:
            patch.setattr(_predict, "SPARSE_MAX_DENSITY", 0.0)
            assert_close(model.apply_edit(dense, edit, decode=decode), fast, decode)
        with monkeypatch.context() as patch:
            patch.setattr(_predict, "CpuBlocks", _predict.TorchBlocks)
            assert_close(fast, model.apply_edit(~stim, edit, decode=decode), decode)
        if mask:
            np.testing.assert_array_equal(fast[:, 1::2], dense[:, 1::2])
    assert np.abs(fast - model.apply_edit(~stim, edit)).max() > 0.1  # plain differs


def test_apply_edit_writes_into_out_block_by_block(toy_adata, tmp_path):
    import h5py

    model = sne.NeuronEditor(toy_adata, **SMALL).train(random_state=0, **FAST)
    treated = (toy_adata.obs["condition"] == "treated").to_numpy()
    edit = model.learn_edit(~treated, treated)
    expected = model.apply_edit(~treated, edit, batch_size=7)
    shape = expected.shape
    memmap = np.lib.format.open_memmap(tmp_path / "pred.npy", mode="w+", dtype="float32",
                                       shape=shape)
    assert model.apply_edit(~treated, edit, out=memmap, batch_size=7) is memmap
    np.testing.assert_array_equal(np.load(tmp_path / "pred.npy"), expected)
    with h5py.File(tmp_path / "pred.h5", "w") as f:
        ds = f.create_dataset("predicted", shape=shape, dtype="float64")
        model.apply_edit(~treated, edit, out=ds, batch_size=7)
    with h5py.File(tmp_path / "pred.h5") as f:
        np.testing.assert_allclose(f["predicted"][:], expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"out must have shape \(\d+, \d+\)"):
        model.apply_edit(~treated, edit, out=np.empty((3, shape[1]), "float32"))


def test_mixed_precision_trains_in_bfloat16_and_keeps_float32_weights(toy_adata):
    kw = dict(random_state=0, **{**FAST, "max_epochs": 20})
    with pytest.warns(UserWarning, match="mixed_precision=True on the CPU"):
        mixed = sne.NeuronEditor(toy_adata, **SMALL).train(mixed_precision=True, **kw)
    full = sne.NeuronEditor(toy_adata, **SMALL).train(**kw)
    assert all(p.dtype == torch.float32 for p in mixed.network.parameters())
    assert mixed.train_params["mixed_precision"] and not full.train_params["mixed_precision"]
    # bfloat16 passes change the path (so autocast was on) but not what is learned
    assert mixed.history.train_loss != full.history.train_loss
    assert mixed.history.train_loss[-1] < 0.5 * mixed.history.train_loss[0]
    assert mixed.history.train_loss[-1] < 1.2 * full.history.train_loss[-1]
