"""Synergy within populations: per-population tests, quantile shifts, the tidy table."""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import assert_unchanged, snapshot
from scipy import stats

import sc_neuronedit as sne
from sc_neuronedit._synergy import (
    MIN_TAIL_CELLS,
    STATISTICS,
    TEST_COLUMNS,
    grouped_statistics,
    holm,
    population_tests,
    statistics_tested,
)

# The per-feature quantile edit (no autoencoder): the statistics are under test here, not the
# decoder's accuracy (tests/test_combination.py covers the autoencoder's routes).
FAST = dict(progress=False, device="cpu", n_resamples=20, edit_layer="input")


def drugs(gamma: float, *, n: int = 300, subset: float = 1.0, seed: int = 0):
    """Known answer: three populations P, Q, R (0.4, 0.3, 0.3 of the cells; told apart by
    feature 5, which no drug moves). A raises feature 0 everywhere and feature 1 in P; B
    raises feature 2 in Q and lowers 3 everywhere. The combination adds ``gamma`` on
    feature 4 in P only, in a share ``subset`` of P's cells; gamma = 0 is exactly the
    composition of the two effects."""
    rng = np.random.default_rng(seed)
    blocks, conds, pops = [], [], []
    for cond in ("ctrl", "A", "B", "AB"):
        pop = rng.choice(np.array(["P", "Q", "R"]), size=n, p=[0.4, 0.3, 0.3])
        x = rng.normal(1.0, 0.5, size=(n, 8))
        x[:, 5] += np.select([pop == "P", pop == "Q"], [3.0, 1.5], 0.0)
        if "A" in cond:
            x[:, 0] += 1.0
            x[pop == "P", 1] += 1.0
        if "B" in cond:
            x[pop == "Q", 2] += 0.8
            x[:, 3] -= 0.5
        if cond == "AB":
            x[(pop == "P") & (rng.random(n) < subset), 4] += gamma
        blocks.append(x)
        conds += [cond] * n
        pops.append(pop)
    obs = pd.DataFrame({"condition": pd.Categorical(conds),
                        "population": pd.Categorical(np.concatenate(pops))},
                       index=[f"c{i}" for i in range(len(conds))])
    return ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs)


def run(adata, **kwargs):
    sne.tl.synergy(adata, "condition", control="ctrl", combinations={"AB": ("A", "B")},
                   **{**FAST, "population_key": "population", **kwargs})
    return adata.uns["synergy"]


def test_interaction_in_one_population_is_found_there_only(tmp_path):
    adata = drugs(0.8)
    res = run(adata)
    tests = res["tests"]
    assert list(tests.columns) == list(TEST_COLUMNS)
    assert set(tests["population"]) == {"all", "P", "Q", "R"}
    assert set(tests["statistic"]) == set(STATISTICS)
    assert len(tests) == 4 * 8 * len(STATISTICS)
    # ~120 P cells per condition: too few beyond q10 and q90 for them to be tested
    fewest = adata.obs.query("population == 'P'")["condition"].value_counts().min()
    in_p = {s for s, ok in zip(STATISTICS, statistics_tested([fewest])[0]) if ok}
    assert in_p == {"mean", "q50"}
    tested = tests["pvalue"].notna()
    assert tested.sum() == res["summary"].loc["AB", "n_tests"]
    assert tests.loc[~tested, "qvalue"].isna().all()
    found = tests[(tests["qvalue"] < 0.05) & (tests["feature"] == "4")]
    assert set(found["population"]) == {"P", "all"}, found
    assert set(found.query("population == 'P'")["statistic"]) == in_p
    p4 = tests.query("population == 'P' and feature == '4' and statistic == 'mean'").iloc[0]
    assert 0.55 < p4["estimate"] < 1.05 and p4["qvalue"] < 1e-3, p4
    ab = adata.obs["condition"] == "AB"
    assert p4["n_observed"] == int((ab & (adata.obs["population"] == "P")).sum())
    assert p4["n_predicted"] == int((adata.obs["condition"].isin(["A", "B"])
                                     & (adata.obs["population"] == "P")).sum())
    # the summary p is Holm over the tested rows
    np.testing.assert_allclose(res["summary"].loc["AB", "family_pvalue"],
                               min(1.0, tests["pvalue"].min() * tested.sum()))
    # the pooled mean row is the wide tables' test
    pooled = tests.query("population == 'all' and statistic == 'mean'").set_index("feature")
    np.testing.assert_allclose(pooled["pvalue"], res["pvalue"].loc["AB", pooled.index])
    back = ad.read_h5ad(_written(tmp_path, res)).uns["synergy"]
    pd.testing.assert_frame_equal(back["tests"], tests, check_dtype=False)


def _written(tmp_path, res):
    holder = ad.AnnData(np.zeros((1, 1), np.float32))
    holder.uns["synergy"] = res
    path = tmp_path / "s.h5ad"
    holder.write_h5ad(path)
    return path


def test_independent_effects_give_no_synergy_in_any_population():
    tests = run(drugs(0.0, seed=1))["tests"]
    # At 0.05 a single draw fails ~5 % of the time by design (here: population R, feature 6,
    # q = 0.043, where the observed cells happen to lie 3 SE above the expected mean); the
    # rate itself is checked below and in benchmarks/synergy_populations.py.
    assert tests["qvalue"].min() > 0.01, tests.nsmallest(3, "pvalue")
    assert np.all(np.abs(tests.query("statistic == 'mean'")["estimate"]) < 0.3)


def test_quantile_statistic_sees_a_subset_shift():
    # A quarter of P's cells move by 2.4: the upper quantile moves far more than the median.
    # (~280 P cells per condition: enough beyond q90 for it to be tested.)
    tests = run(drugs(2.4, n=700, subset=0.25, seed=2))["tests"].set_index(
        ["population", "feature", "statistic"])
    q90, q50 = tests.loc[("P", "4", "q90")], tests.loc[("P", "4", "q50")]
    assert q90["estimate"] > 1.0 and q90["qvalue"] < 0.05
    assert q90["estimate"] > 3 * abs(q50["estimate"])


def test_population_tests_calibrated_with_many_populations():
    # Known answer, arrays only: observed and predicted cells from the same distributions in
    # 12 populations x 6 features x 4 statistics; the pipeline's reruns are bootstrap resamples
    # of the predicted cells. Each p must be uniform, and the Holm summary p over the family
    # of 312 tests must reject at about 5 %.
    rng = np.random.default_rng(0)
    n_pop, n_feat, n_runs, n_boot = 12, 6, 100, 30
    groups = [f"p{i}" for i in range(n_pop)]
    summary, first = [], []
    for _ in range(n_runs):
        def draw(n):
            labels = rng.choice(np.array(groups), size=n)
            centre = np.array([int(g[1:]) for g in labels], float)[:, None] / 3
            return centre + rng.gamma(2.0, 0.5, size=(n, n_feat)), labels

        obs, obs_lab = draw(1200)
        pred, pred_lab = draw(1200)
        pops = ["all", *groups]
        from sc_neuronedit._synergy import grouped_statistics

        boot, boot_obs = [], []
        for _ in range(n_boot):
            i, j = rng.integers(0, 1200, 1200), rng.integers(0, 1200, 1200)
            boot.append(grouped_statistics(pred[i], pred_lab[i], pops))
            boot_obs.append(grouped_statistics(obs[j], obs_lab[j], pops))
        t = population_tests(obs, obs_lab, pred, pred_lab, boot, boot_obs, populations=pops,
                             features=[str(k) for k in range(n_feat)])
        assert len(t) == (n_pop + 1) * n_feat * len(STATISTICS)
        summary.append(holm(t["pvalue"].to_numpy()).min())
        first.append(t["pvalue"].to_numpy())
    p = np.concatenate(first)
    assert 0.035 < (p < 0.05).mean() < 0.065, (p < 0.05).mean()
    # 0.08 measured (0.15 before the Harrell-Davis quantiles and the kurtosis-aware degrees
    # of freedom); with 100 runs the 95 % interval of a true 5 % reaches 0.11
    assert np.mean(np.array(summary) < 0.05) <= 0.11


def test_quantiles_tested_only_with_cells_beyond_them():
    at = MIN_TAIL_CELLS
    ok = statistics_tested([at * 2 - 1, at * 2, at * 10 - 1, at * 10])
    assert ok.tolist() == [[True, False, False, False], [True, False, True, False],
                           [True, False, True, False], [True, True, True, True]]


def test_holm():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.5]), [0.04, 0.09, 0.09, 0.5])


def test_unknown_population_column_leaves_adata_unchanged():
    adata = drugs(0.0, n=60)
    snap = snapshot(adata)
    with pytest.raises((KeyError, ValueError), match="celltype"):
        run(adata, population_key="celltype")
    assert_unchanged(adata, snap)


def test_population_missing_from_a_condition_is_left_out_and_listed(tmp_path):
    adata = drugs(0.0, n=200)
    drop = (adata.obs["condition"] == "AB") & (adata.obs["population"] == "R")
    adata = adata[~drop.to_numpy()].copy()
    with pytest.warns(UserWarning, match=r"not tested: 'R' in 'AB' \(ctrl: \d+, A: \d+, B: \d+, "
                                         r"AB: 0\)"):
        res = run(adata)
    assert set(res["tests"]["population"]) == {"all", "P", "Q"}
    assert res["excluded_populations"].to_dict("records") == [
        {"combination": "AB", "population": "R", "cells": res["excluded_populations"].iloc[0]["cells"]}]
    back = ad.read_h5ad(_written(tmp_path, res)).uns["synergy"]
    assert list(back["excluded_populations"]["population"]) == ["R"]


def test_population_heatmap_and_distributions(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    adata = drugs(1.5, n=150, seed=3)
    sne.tl.predict_combination(adata, "condition", control="ctrl", drug_a="A", drug_b="B",
                               combination="AB", **{**FAST, "population_key": "population"})
    fig = sne.pl.synergy(adata, "combination")  # a population run: populations x features
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["all", "P", "Q", "R"]
    dots = ax.collections[0].get_offsets()
    assert dots.tolist() == [[4, 0], [4, 1]]  # feature 4 (x) in "all" and P (rows 0, 1)
    fig.savefig(tmp_path / "populations.png", dpi=100)
    rows = sne.pl.synergy(adata, "combination", rows="combination").axes[0].get_yticklabels()
    assert [t.get_text() for t in rows] == ["AB"]
    fig = sne.pl.synergy_distributions(adata, "4", population="P")
    ax = fig.axes[0]
    assert [t.get_text().split(" (")[0] for t in ax.get_legend().get_texts()] == [
        "observed", "predicted"]
    assert "mean +" in ax.get_title(loc="left")  # the tests row of P, feature 4
    fig.savefig(tmp_path / "distributions.png", dpi=100)
    with pytest.raises(ValueError, match="statistic must be one of"):
        sne.pl.synergy(adata, "combination", statistic="q99")
    with pytest.raises(ValueError, match="population='S' has no AB cells"):
        sne.pl.synergy_distributions(adata, "4", population="S")


def test_distortion_variance_is_the_squared_shift_less_its_noise():
    from sc_neuronedit._synergy import distortion_variance

    # mean 0.5, variance 0.02 over 2 halvings: 0.25 - 0.02 / 2
    np.testing.assert_allclose(distortion_variance([[0.4], [0.6]]), [0.24])
    # Noise around no shift: never negative, and about half of what the squared mean alone
    # would add (sigma^2 / k; the clipping at zero keeps the rest): 0.53 measured.
    noise = np.random.default_rng(0).normal(0, 0.1, size=(4, 5000))
    term = distortion_variance(noise)
    assert term.min() == 0 and term.mean() < 0.6 * 0.1**2 / 4
    with pytest.raises(ValueError, match="at least 2"):
        distortion_variance([[0.1]])


def test_identity_shifts_absorb_a_distortion_the_bootstrap_cannot_see():
    # Known answer, arrays only: the pipeline stretches population p0's lower tail of feature 0
    # (its 10 % lowest predicted cells are 1.5 lower); observed and predicted are otherwise
    # alike. The reruns repeat the stretch, so their spread cannot see it: q10 is "significant".
    # The identity shifts measure the stretch (with noise) and the test no longer calls it.
    rng = np.random.default_rng(1)
    pops = ["all", "p0", "p1"]

    def draw(n, stretched):
        labels = rng.choice(np.array(pops[1:]), size=n)
        x = rng.normal(0, 1, size=(n, 3))
        if stretched:
            low = (labels == "p0") & (x[:, 0] < np.quantile(x[labels == "p0", 0], 0.1))
            x[low, 0] -= 1.5
        return x, labels

    obs, obs_lab = draw(1500, False)
    pred, pred_lab = draw(1500, True)
    boot = [grouped_statistics(*draw(1500, True), pops) for _ in range(30)]
    boot_obs = [grouped_statistics(*draw(1500, False), pops) for _ in range(30)]
    shifts = [grouped_statistics(*draw(1500, True), pops) - grouped_statistics(*draw(1500, False), pops)
              for _ in range(4)]
    kwargs = dict(populations=pops, features=["f0", "f1", "f2"])
    without = population_tests(obs, obs_lab, pred, pred_lab, boot, boot_obs, **kwargs)
    with_shifts = population_tests(obs, obs_lab, pred, pred_lab, boot, boot_obs,
                                   identity_shifts=shifts, **kwargs)
    cell = "population == 'p0' and feature == 'f0' and statistic == 'q10'"
    assert without.query(cell)["pvalue"].iloc[0] < 1e-4
    assert with_shifts.query(cell)["pvalue"].iloc[0] > 0.05
    # where nothing is distorted, the test keeps its power: standard errors barely change
    other = "not (feature == 'f0' and population != 'p1')"
    ratio = with_shifts.query(other)["se"].to_numpy() / without.query(other)["se"].to_numpy()
    assert np.median(ratio) < 1.1, np.median(ratio)


def test_family_smallest_pvalue_uniform_with_small_populations():
    # Null simulation on fixed real cells, no model: the BCR-XL Ref cells in k-means(10)
    # populations on their type markers (~10-130 cells per condition at 600 cells), 8
    # signalling markers (skewed, as the q90 of a small population that made the family's
    # false calls). Observed and both routes' cells are independent draws from the same
    # cells; the pipeline is the identity, so its reruns are resamples of the routes' cells.
    # The family's smallest p, made uniform by the Sidak transform of its number of tests,
    # must not be too small (one-sided KS), nor the family p below 0.05 too often.
    from sklearn.cluster import KMeans

    from sc_neuronedit.tl._combination_run import MIN_CELLS

    bcr = sne.datasets.bodenmiller_bcrxl()
    ref = bcr[bcr.obs["condition"] == "Ref"]
    X = np.arcsinh(np.asarray(ref.X, dtype=np.float64) / 5)
    kind = ref.var["marker_class"].to_numpy()
    labels = KMeans(10, n_init=3, random_state=0).fit_predict(X[:, kind == "type"]).astype(str)
    X = X[:, np.flatnonzero(kind == "state")[:8]]
    rng = np.random.default_rng(0)
    n, n_runs, n_boot = 600, 150, 20
    uniform, family = [], []
    for _ in range(n_runs):
        obs, first, second = (rng.integers(0, len(X), n) for _ in range(3))
        pred = np.concatenate([first, second])
        fewest = {g: min(np.sum(labels[i] == g) for i in (obs, first, second))
                  for g in np.unique(labels)}
        pops = ["all", *(g for g, c in fewest.items() if c >= MIN_CELLS)]
        boot, boot_obs = [], []
        for _ in range(n_boot):
            i = np.concatenate([rng.choice(first, n), rng.choice(second, n)])
            boot.append(grouped_statistics(X[i], labels[i], pops))
            j = rng.choice(obs, n)
            boot_obs.append(grouped_statistics(X[j], labels[j], pops))
        gap = (grouped_statistics(X[first], labels[first], pops)
               - grouped_statistics(X[second], labels[second], pops))
        p = population_tests(X[obs], labels[obs], X[pred], labels[pred], boot, boot_obs,
                             populations=pops, features=list(range(X.shape[1])), route_gap=gap,
                             cells=[n, *(fewest[g] for g in pops[1:])])["pvalue"].dropna()
        family.append(min(1.0, p.min() * len(p)))
        uniform.append(1 - (1 - p.min()) ** len(p))
    # measured: KS p 0.999, family p < 0.05 in 4 of 150 (0.027); with every row tested the same
    # simulation (200 draws) gave 0.05
    assert stats.kstest(uniform, "uniform", alternative="greater").pvalue > 0.05
    assert np.mean(np.array(family) < 0.05) <= 0.06
