import numpy as np
import pytest

from sc_neuronedit import metrics


def test_r2_means_and_variances_known_answers():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 50)) * rng.uniform(0.5, 2, 50) + rng.uniform(0, 5, 50)
    assert metrics.r2_means(real, real) == pytest.approx(1.0)
    assert metrics.r2_means(real * 2 + 1, real) == pytest.approx(1.0)  # r² ignores scale
    assert metrics.r2_variances(real, real) == pytest.approx(1.0)
    assert metrics.r2_means(rng.normal(size=(200, 50)), real) < 0.3


def test_r2_change_penalises_wrong_scale():
    rng = np.random.default_rng(1)
    control = rng.normal(size=(100, 40))
    effect = rng.normal(size=40)
    real = control + effect
    assert metrics.r2_change(control + effect, real, control) == pytest.approx(1.0)
    half = metrics.r2_change(control + 0.5 * effect, real, control)
    assert half < 0.9 and metrics.r2_means(control + 0.5 * effect, real) > 0.9
    assert metrics.r2_change(control, real, control) < 0.05


def test_energy_distance_known_answers():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 3))
    assert metrics.energy_distance(X, X) == pytest.approx(0.0, abs=1e-12)
    near = metrics.energy_distance(X, rng.normal(size=(300, 3)))
    far = metrics.energy_distance(X, rng.normal(size=(300, 3)) + [3, 0, 0])
    assert near < 0.1 < 2 < far
    # Euclidean, not squared: same means, different spread must still count
    wide = metrics.energy_distance(X, 3 * rng.normal(size=(300, 3)))
    assert wide > 0.5


def test_pca_energy_distance_and_floor():
    rng = np.random.default_rng(3)
    ctrl = rng.normal(size=(120, 60))
    real = rng.normal(size=(120, 60)) + 1.0
    d_real, floor = metrics.pca_energy_distance(real, real, ctrl)
    assert d_real == pytest.approx(0.0, abs=1e-9) and floor > 0
    d_ctrl, _ = metrics.pca_energy_distance(ctrl, real, ctrl)
    assert d_ctrl > 5 * floor


def test_emd_per_feature():
    a = np.zeros((10, 2))
    b = np.column_stack([np.ones(10), np.zeros(10)])
    np.testing.assert_allclose(metrics.emd_per_feature(a, b), [1.0, 0.0])


def test_spread_gap_known_answers():
    # Per feature MADs: batch a (1, 2), b (2, 2), c (3, 2); mean over batches (2, 2).
    base = np.array([[-1.0], [0.0], [1.0]])
    X = np.vstack([np.hstack([base * s, base * 2]) for s in (1, 2, 3)])
    batches = np.repeat(["a", "b", "c"], 3)
    # From the mean: feature 1 gaps 1/2, 0, 1/2; feature 2 none -> (1/4 + 0 + 1/4) / 3
    assert metrics.spread_gap(X, batches) == pytest.approx(1 / 6)
    per = metrics.spread_gap(X, batches, per_batch=True)
    np.testing.assert_allclose(per.to_numpy(), [0.25, 0.0, 0.25])
    # From batch b (left out): a is 1/2 off, c 1/2 off in feature 1 -> (1/4 + 1/4) / 2
    assert metrics.spread_gap(X, batches, goal="b") == pytest.approx(0.25)
    assert list(metrics.spread_gap(X, batches, goal="b", per_batch=True).index) == ["a", "c"]
    # Given goal spreads; a zero goal counts as 1e-3, not a division by zero
    assert metrics.spread_gap(X, batches, goal=np.array([1.0, 2.0])) == pytest.approx((0 + 1 + 2) / 3 / 2)
    assert np.isfinite(metrics.spread_gap(X, batches, goal=np.zeros(2)))
    # A location shift alone leaves the spread gap at zero; a common rescaling too
    shifted = np.vstack([base + 5 * i for i in range(3)])
    assert metrics.spread_gap(shifted, batches) == 0.0
    assert metrics.spread_gap(3 * X, batches) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="goal batch"):
        metrics.spread_gap(X, batches, goal="z")


def test_top_degs_on_kang(kang):
    degs = metrics.top_degs(kang[kang.obs.cell_type == "CD14+Mono"], "condition", "stimulated", "control")
    assert len(degs) == 100
    assert {"ISG15", "IFI6"} <= set(degs[:20])
    assert "condition" in kang.obs and "rank_genes_groups" not in kang.uns  # input untouched


def test_mean_shift_baseline_balances_groups():
    src = np.array([[0.0], [0.0], [0.0], [10.0]])
    tgt = np.array([[1.0], [11.0], [11.0], [11.0]])
    ctrl = np.array([[5.0]])
    # per group the change is +1; unbalanced means learn +6, mostly the change of composition
    out = metrics.mean_shift_prediction(ctrl, src, tgt, source_groups=["a", "a", "a", "b"],
                                        target_groups=["a", "b", "b", "b"])
    np.testing.assert_allclose(out, [[6.0]])
    np.testing.assert_allclose(metrics.mean_shift_prediction(ctrl, src, tgt), [[11.0]])
