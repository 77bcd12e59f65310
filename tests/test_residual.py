"""The residual edit conditioned on the decoded level (``learn_edit(residual_bins=)``)."""

import numpy as np
import pytest
import torch

import sc_neuronedit as sne
from sc_neuronedit import _kernels, _predict, fit_quantile_edit
from sc_neuronedit._edit import weighted_quantiles
from sc_neuronedit._residual import (
    MIN_BIN_CELLS,
    LevelResidualEdit,
    fit_level_residual_edit,
)

EPS = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 12)).astype(np.float32)
    treated = np.arange(400) >= 200
    # a heterogeneous switch: half of the treated cells turn gene 0 on strongly
    X[treated, 0] += np.where(rng.random(200) < 0.5, 4.0, 0.0)
    X[treated, 1:4] += 1.5
    model = sne.NeuronEditor(X, hidden=(16,), n_latent=4).train(
        max_epochs=3, random_state=0, device="cpu", progress=False)
    return model, X, treated


def test_one_bin_is_the_pooled_residual_edit(trained):
    # residual_bins=1 must be the edit as it was before the option, number for number:
    # decode(z') + r + shift(r) with the pooled quantile edit of the residuals.
    model, X, treated = trained
    net = model.network
    edit = model.learn_edit(~treated, treated, residual_bins=1)
    with torch.no_grad():
        x = torch.from_numpy(X)
        residual = x - net(x)
        pooled = fit_quantile_edit(residual[~treated], residual[treated])
        torch.testing.assert_close(edit.residual.source_knots[0], pooled.source_knots, rtol=0, atol=0)
        torch.testing.assert_close(edit.residual.target_knots[0], pooled.target_knots, rtol=0, atol=0)
        x0 = x[~treated]
        r = x0 - net.decode(net.encode(x0, model.edit_layer), model.edit_layer)
        expected = net.decode(edit.neurons.apply(net.encode(x0, model.edit_layer)), model.edit_layer)
        expected += r
        expected += pooled.shift(r)
    with pytest.MonkeyPatch.context() as patch:  # the network's own passes, as on a GPU
        patch.setattr(_predict, "CpuBlocks", _predict.TorchBlocks)
        np.testing.assert_array_equal(model.apply_edit(~treated, edit), expected.numpy())
    # The CPU fast path runs the pooled edit's kernel, as before the option.
    tables = _predict._residual_tables(edit.residual)
    assert isinstance(tables, _kernels.KnotTables)
    np.testing.assert_allclose(model.apply_edit(~treated, edit), expected.numpy(), atol=2e-5, rtol=0)
    # An Edit built from a QuantileEdit is the same one-bin edit.
    again = sne.Edit(edit.neurons, pooled)
    np.testing.assert_array_equal(model.apply_edit(~treated, again), model.apply_edit(~treated, edit))


def test_level_quantiles_are_the_quantiles_within_each_level_bin():
    """The compiled fit: edges are the weighted quantiles of the decoded values, and each
    bin's knots the weighted quantiles of its cells' residuals -- with tied values, zero
    weights and tied levels (which leave bins empty)."""
    g = torch.Generator().manual_seed(0)
    d, n, k = 6, 400, 4
    res = torch.randn(d, n, generator=g, dtype=torch.float64).round(decimals=1)  # ties
    dec = torch.rand(d, n, generator=g, dtype=torch.float64)
    dec[0] = (3 * dec[0]).round()  # few levels: some bins stay empty
    weights = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    weights[:7] = 0.0
    probs = torch.linspace(0, 1, 25, dtype=torch.float64)
    edges, knots, ess = _kernels.level_quantiles(res.T.numpy(), dec.T.numpy(), weights.numpy(), k,
                                                 probs.numpy())
    expected_edges = weighted_quantiles(dec.T, torch.arange(1, k, dtype=torch.float64) / k, weights)
    np.testing.assert_allclose(edges, expected_edges.numpy(), rtol=0, atol=1e-12)
    assert (ess[:, 0] == 0).any() and (ess[:, 1:] > 0).all()
    for j in range(d):
        level = np.searchsorted(edges[:, j], dec[j].numpy(), side="right")
        for b in range(k):
            inside = torch.from_numpy(level == b)
            w = weights[inside]
            if not w.sum() > 0:
                assert ess[b, j] == 0
                continue
            expected = weighted_quantiles(res[j, inside, None], probs, w)[:, 0]
            np.testing.assert_allclose(knots[b, :, j], expected.numpy(), rtol=0, atol=1e-12)
            np.testing.assert_allclose(ess[b, j], (w.sum() ** 2 / (w**2).sum()).item(), rtol=1e-12)


def _switching_gene(n, generator):
    """Source cells narrow at every level; target cells narrow below level 2 (80 %) and a
    wide mix (+-2) above it: the spread of a gene that switches on heterogeneously."""
    level_s = 4 * torch.rand(n, 1, generator=generator)
    res_s = 0.05 * torch.randn(n, 1, generator=generator)
    high = torch.rand(n, 1, generator=generator) < 0.2
    level_t = torch.where(high, 2 + 2 * torch.rand(n, 1, generator=generator),
                          2 * torch.rand(n, 1, generator=generator))
    sign = torch.where(torch.rand(n, 1, generator=generator) < 0.5, -2.0, 2.0)
    res_t = torch.where(high, sign + 0.05 * torch.randn(n, 1, generator=generator),
                        0.05 * torch.randn(n, 1, generator=generator))
    return res_s, level_s, res_t, level_t


def test_level_dependent_spread_is_recovered_with_bins_not_pooled():
    g = torch.Generator().manual_seed(0)
    res_s, level_s, res_t, level_t = _switching_gene(4000, g)
    # Cells at a low level, predicted at a high one: their residuals should take the
    # target's spread there (sd 2), not the pooled target's (sd ~0.9).
    r = 0.05 * torch.randn(2000, 1, generator=g)
    decoded, edited = 0.5 * torch.rand(2000, 1, generator=g), 3.5 + 0.5 * torch.rand(2000, 1, generator=g)
    spread = {}
    for k in (1, 10):
        edit = fit_level_residual_edit(res_s, level_s, res_t, level_t, n_bins=k)
        spread[k] = float((r + edit.shift(r, decoded, edited)).std())
    assert abs(spread[10] - 2.0) < 0.15
    assert spread[1] < 1.2


def test_small_bins_fall_back_to_the_pooled_edit():
    g = torch.Generator().manual_seed(1)
    n = 600
    level = torch.rand(n, 2, generator=g)
    res = torch.randn(n, 2, generator=g) * (1 + level)
    # Gene 0: 12 heavily weighted cells hold the highest levels, so its top bins are
    # a dozen cells however much weight they carry.
    weights = torch.ones(n)
    top = torch.argsort(level[:, 0])[-12:]
    weights[top] = 20.0
    edit = fit_level_residual_edit(res, level, res + 1, level, n_bins=4, source_weights=weights,
                                   target_weights=weights)
    assert edit.pooled.tolist() == [True, False]
    pooled = fit_quantile_edit(res, res + 1, source_weights=weights, target_weights=weights)
    for b in range(4):
        torch.testing.assert_close(edit.source_knots[b, :, 0], pooled.source_knots[:, 0])
        torch.testing.assert_close(edit.target_knots[b, :, 0], pooled.target_knots[:, 0])
    probe = torch.randn(50, 2, generator=g) * 3
    shift = edit.shift(probe, torch.rand(50, 2, generator=g), torch.rand(50, 2, generator=g))
    torch.testing.assert_close(shift[:, 0], pooled.shift(probe)[:, 0], atol=1e-5, rtol=0)
    # The rule is the effective number of cells: without a minimum gene 0 keeps its bins.
    assert not fit_level_residual_edit(res, level, res + 1, level, n_bins=4, source_weights=weights,
                                       target_weights=weights, min_cells=0).pooled.any()
    assert MIN_BIN_CELLS > 12


def test_empty_bins_from_tied_levels_fall_back():
    # A gene decoded to one value in most cells: its bin edges tie and bins are empty.
    g = torch.Generator().manual_seed(2)
    level = torch.zeros(300, 1)
    level[:20] = torch.rand(20, 1, generator=g)
    res = torch.randn(300, 1, generator=g)
    edit = fit_level_residual_edit(res, level, 2 * res, level, n_bins=5)
    assert edit.pooled.all()
    assert torch.isfinite(edit.source_knots).all() and torch.isfinite(edit.target_knots).all()


@pytest.mark.parametrize("seed", range(6))
def test_compiled_kernel_equals_the_torch_path(seed):
    # Same inputs: the CPU kernel must be the function LevelResidualEdit.shift computes,
    # at and beside knots and bin edges, far outside, with ties, pooled features and
    # any number of bins.
    g = torch.Generator().manual_seed(seed)
    k = [2, 3, 5, 10, 16, 7][seed]
    n, d = 500, 6
    def side():
        level = torch.randn(n, d, generator=g)
        res = torch.randn(n, d, generator=g) * (1 + level.abs())
        res[:, 0] = res[:, 0].round()  # tied knots
        return res, level
    weights = torch.rand(n, generator=g) + 0.05
    edit = fit_level_residual_edit(*side(), *side(), n_bins=k, n_quantiles=[2, 17, 100, 50, 3, 100][seed],
                                   source_weights=weights)
    knots = edit.source_knots.permute(1, 0, 2).reshape(-1, d)
    edges = torch.cat([edit.source_edges, edit.target_edges])
    r = torch.cat([torch.randn(300, d, generator=g) * 5, knots, torch.nextafter(knots, knots - 1),
                   torch.nextafter(knots, knots + 1), torch.tensor([[-1e6], [1e6]]).expand(-1, d)])
    m = len(r)
    levels = torch.cat([torch.randn(m - len(edges), d, generator=g) * 2, edges])
    decoded, edited = levels, levels[torch.randperm(m, generator=g)]
    x_t = np.ascontiguousarray((r + decoded).T.numpy())
    r = torch.from_numpy(x_t.T) - decoded  # the residual as the kernel forms it
    expected = edited + r + edit.shift(r, decoded, edited)
    e_t = np.ascontiguousarray(edited.T.numpy())
    tables = _kernels.level_tables(*(getattr(edit, f).numpy() for f in (
        "source_edges", "target_edges", "source_knots", "target_knots")))
    _kernels.level_residual(x_t, np.ascontiguousarray(decoded.T.numpy()), e_t, tables)
    largest = edit.source_knots.abs().amax((0, 1)) + edit.target_knots.abs().amax((0, 1))
    scale = edited.abs() + r.abs() + largest
    assert (torch.from_numpy(e_t.T) - expected).abs().le(8 * EPS * scale).all()


def test_level_edit_checks_its_shapes():
    pooled = fit_quantile_edit(torch.randn(50, 3), torch.randn(50, 3))
    edit = LevelResidualEdit.from_pooled(pooled)
    with pytest.raises(ValueError, match="must be"):
        edit.shift(torch.zeros(4, 3), torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="source_edges"):
        LevelResidualEdit(torch.zeros(2, 3), torch.zeros(1, 3), torch.zeros(2, 5, 3), torch.zeros(2, 5, 3),
                          torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="n_bins"):
        fit_level_residual_edit(torch.zeros(5, 3), torch.zeros(5, 3), torch.zeros(5, 3), torch.zeros(5, 3),
                                n_bins=0)


def test_default_edit_has_level_bins_and_backed_input_matches(trained, tmp_path):
    # learn_edit reads decoded values block by block, so a backed AnnData learns the
    # same level bins as the in-memory one.
    import anndata as ad

    model, X, treated = trained
    adata = ad.AnnData(X)
    adata.write_h5ad(tmp_path / "x.h5ad")
    backed = ad.read_h5ad(tmp_path / "x.h5ad", backed="r")
    mem = sne.NeuronEditor(adata, hidden=(16,), n_latent=4)
    disk = sne.NeuronEditor(backed, hidden=(16,), n_latent=4)
    mem.network = disk.network = model.network
    a, b = (m.learn_edit(~treated, treated, residual_bins=5) for m in (mem, disk))
    assert a.residual.n_bins == 5
    for f in ("source_edges", "target_edges", "source_knots", "target_knots", "pooled"):
        torch.testing.assert_close(getattr(a.residual, f), getattr(b.residual, f), rtol=0, atol=0)
    np.testing.assert_array_equal(mem.apply_edit(~treated, a), disk.apply_edit(~treated, b))
    backed.file.close()


def test_tl_functions_pass_the_bin_count_through(toy_adata):
    model = sne.NeuronEditor(toy_adata, hidden=(16,), n_latent=4).train(
        max_epochs=2, random_state=0, device="cpu", progress=False)
    preds = {}
    for k in (1, 3):
        out = sne.tl.neuron_edit(
            toy_adata, {"condition": "control", "cell_type": ["A", "B"]},
            {"condition": "treated", "cell_type": ["A", "B"]},
            apply_to={"condition": "control", "cell_type": "C"}, groupby="cell_type", model=model,
            residual_bins=k, inplace=False, progress=False)
        assert out.uns["neuron_edit"]["params"]["residual_bins"] == k
        preds[k] = np.asarray(out.X)
    assert not np.allclose(preds[1], preds[3])
