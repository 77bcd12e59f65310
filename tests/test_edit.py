import numpy as np
import pytest
import torch

from sc_neuronedit import QuantileEdit, fit_quantile_edit
from sc_neuronedit._edit import weighted_quantiles


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    source = torch.randn(500, 6, generator=g)
    # a non-linear, neuron-specific target: stretch, shift, and skew
    target = 1.5 * source + torch.arange(6.0) + 0.3 * source**2
    return source, target


def test_maps_source_knots_onto_target_knots(pair):
    edit = fit_quantile_edit(*pair, n_quantiles=50)
    torch.testing.assert_close(edit.apply(edit.source_knots), edit.target_knots, atol=1e-5, rtol=0)


def test_identity_when_source_equals_target(pair):
    source, _ = pair
    edit = fit_quantile_edit(source, source.clone())
    probe = torch.randn(200, 6) * 3
    torch.testing.assert_close(edit.apply(probe), probe)


def test_matches_np_interp_inside_range(pair):
    edit = fit_quantile_edit(*pair, n_quantiles=30)
    probe = torch.rand(300, 6) * 2 - 1  # well inside the source range
    out = edit.apply(probe).numpy()
    for j in range(6):
        expected = np.interp(probe[:, j].numpy(), edit.source_knots[:, j].numpy(),
                             edit.target_knots[:, j].numpy())
        np.testing.assert_allclose(out[:, j], expected, atol=1e-5)


def test_monotone_per_neuron(pair):
    edit = fit_quantile_edit(*pair)
    grid = torch.linspace(-6, 6, 1001).unsqueeze(1).expand(-1, 6).contiguous()
    assert (torch.diff(edit.apply(grid), dim=0) >= -1e-6).all()


def test_constant_end_shifts_outside_range(pair):
    edit = fit_quantile_edit(*pair)
    lo_shift = edit.target_knots[0] - edit.source_knots[0]
    hi_shift = edit.target_knots[-1] - edit.source_knots[-1]
    below = edit.source_knots[0] - torch.tensor([[0.5], [5.0], [50.0]])
    above = edit.source_knots[-1] + torch.tensor([[0.5], [5.0], [50.0]])
    torch.testing.assert_close(edit.shift(below), lo_shift.expand(3, -1))
    torch.testing.assert_close(edit.shift(above), hi_shift.expand(3, -1))
    assert (edit.outside_fraction(torch.cat([below, above])) == 1).all()


def test_ties_give_finite_monotone_edits():
    # leaky-ReLU-like neurons: a point mass at 0 plus a tail, and a constant neuron
    g = torch.Generator().manual_seed(1)
    base = torch.randn(400, 3, generator=g)
    source = torch.stack([base[:, 0].clamp(min=0), torch.zeros(400), base[:, 2].round()], 1)
    target = source * 2 + 1
    edit = fit_quantile_edit(source, target)
    probe = torch.cat([source, torch.linspace(-3, 3, 101).unsqueeze(1).expand(-1, 3)])
    out = edit.apply(probe)
    assert torch.isfinite(out).all()
    grid = torch.linspace(-3, 3, 601).unsqueeze(1).expand(-1, 3).contiguous()
    assert (torch.diff(edit.apply(grid), dim=0) >= -1e-6).all()
    # the constant neuron shifts by exactly its constant target - source
    torch.testing.assert_close(edit.apply(torch.zeros(5, 3))[:, 1], torch.ones(5))


def test_weighted_quantiles_equal_weights_is_hazen():
    values = torch.randn(101, 4, dtype=torch.float64)
    probs = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    expected = np.quantile(values.numpy(), probs.numpy(), axis=0, method="hazen")
    np.testing.assert_allclose(weighted_quantiles(values, probs).numpy(), expected, atol=1e-12)


def test_group_weights_cancel_composition():
    # Group A sits at 0, group B at 10. The target holds the same two groups at
    # other proportions and no effect: balanced weights must learn no shift.
    g = torch.Generator().manual_seed(2)
    a = torch.randn(300, 1, generator=g) * 0.1
    b = 10 + torch.randn(300, 1, generator=g) * 0.1
    source = torch.cat([a[:240], b[:60]])
    target = torch.cat([a[240:270], b[60:300]])
    w = lambda n_a, n_b: torch.cat([torch.full((n_a,), 1 / n_a), torch.full((n_b,), 1 / n_b)])
    unbalanced = fit_quantile_edit(source, target)
    balanced = fit_quantile_edit(source, target, source_weights=w(240, 60), target_weights=w(30, 240))
    probe = torch.tensor([[0.0], [10.0]])
    assert (balanced.shift(probe).abs() < 0.3).all()
    assert unbalanced.shift(probe).abs().max() > 5  # the composition change, learned as effect


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        fit_quantile_edit(torch.tensor([[float("nan")], [1.0]]), torch.ones(2, 1))
    with pytest.raises(ValueError, match="same number of neurons"):
        fit_quantile_edit(torch.ones(3, 2), torch.ones(3, 3))
    with pytest.raises(ValueError, match="empty"):
        fit_quantile_edit(torch.ones(0, 2), torch.ones(3, 2))
    edit = fit_quantile_edit(torch.randn(10, 2), torch.randn(10, 2))
    with pytest.raises(ValueError, match="shape"):
        edit.apply(torch.ones(4, 3))
    with pytest.raises(ValueError, match="same shape"):
        QuantileEdit(torch.ones(5, 2), torch.ones(4, 2))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_matches_cpu(pair):
    cpu = fit_quantile_edit(*pair)
    gpu = fit_quantile_edit(pair[0].cuda(), pair[1].cuda())
    probe = torch.randn(100, 6)
    torch.testing.assert_close(gpu.apply(probe.cuda()).cpu(), cpu.apply(probe), atol=1e-5, rtol=0)
