"""The self-check: an inner leave-one-group-out that never scores a group with a model
that saw its target cells, and edit_layer="auto" choosing by it."""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import assert_unchanged, snapshot

import sc_neuronedit as sne
from sc_neuronedit import _self_check, _self_check_batches, _self_check_choice
from sc_neuronedit.tl import _self_check as tl_check

PERTURB = dict(control="control", perturbed="treated", groupby="cell_type")
SMALL = dict(progress=False, device="cpu", max_epochs=8, model_kwargs=dict(hidden=(16,), n_latent=4))


def _cells(response: float, n_types: str = "ABCDE", n: int = 50, seed: int = 0):
    """Cell types x 2 populations x 2 conditions; treatment adds ``response`` to feature 0
    of population 'P' only (populations differ in features 1-4)."""
    rng = np.random.default_rng(seed)
    blocks, obs = [], []
    for ct in n_types:
        for pop, offset in (("P", 2.0), ("Q", -2.0)):
            for cond in ("control", "treated"):
                x = rng.normal(0, 1, size=(n, 6))
                x[:, 1:5] += offset
                if cond == "treated" and pop == "P":
                    x[:, 0] += response
                blocks.append(x)
                obs += [(ct, pop, cond)] * n
    obs = pd.DataFrame(obs, columns=["cell_type", "population", "condition"]).astype("category")
    obs.index = [f"c{i}" for i in range(len(obs))]
    return ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs,
                      var=pd.DataFrame(index=[f"f{j}" for j in range(6)]))


def test_a_candidate_better_by_construction_is_chosen(tmp_path):
    adata = _cells(3.0)
    sne.tl.predict_perturbation(adata, "condition", predict_for="E", population_key="population",
                                edit_layer="auto", **PERTURB, **SMALL)
    uns = adata.uns["predicted_perturbation"]
    summary, table = uns["self_check_summary"], uns["self_check"]
    assert summary["chosen"].endswith("within populations")
    overall = table[table.population == "all"].groupby("candidate")["skill"].mean()
    assert overall["input, within populations"] > overall["input, pooled"] + 0.1
    assert set(table.group) == set("ABCD")  # the held-out type is never scored
    assert {"P", "Q", "all"} <= set(table.population)  # per-population rows
    assert table.loc[table.chosen, "candidate"].nunique() == 1
    assert uns["params"]["edit_layer"] in ("input", 1)
    adata.write_h5ad(tmp_path / "a.h5ad")  # survives an .h5ad round trip
    back = ad.read_h5ad(tmp_path / "a.h5ad").uns["predicted_perturbation"]
    pd.testing.assert_frame_equal(back["self_check"].reset_index(drop=True),
                                  table.reset_index(drop=True), check_dtype=False)


def test_no_response_gives_skill_near_zero():
    adata = _cells(0.0, n=80)
    with pytest.warns(UserWarning, match="cannot vouch"):
        sne.tl.predict_perturbation(adata, "condition", predict_for="E", edit_layer="input",
                                    self_check=True, **PERTURB, **SMALL)
    table = adata.uns["predicted_perturbation"]["self_check"]
    skill = table[(table.population == "all") & (table.candidate == "input, pooled")]["skill"]
    # the edit learns sampling noise only: about as good as no change, never much better
    assert abs(skill.mean()) < 0.35 and skill.max() < 0.35
    with_response = _cells(3.0, n=80)
    sne.tl.predict_perturbation(with_response, "condition", predict_for="E", edit_layer="input",
                                self_check=True, **PERTURB, **SMALL)
    table = with_response.uns["predicted_perturbation"]["self_check"]
    assert table[(table.population == "all") & (table.candidate == "input, pooled")]["skill"].min() > 0.5


def test_no_group_is_scored_by_a_model_that_saw_its_target_cells(monkeypatch):
    """Fails if the two-halves split is skipped: every autoencoder the check trains is
    recorded with its cells, and each scored group is checked against the model used."""
    adata = _cells(3.0, n=30)
    trained = []
    real_make = tl_check.trained_model

    def spy(adata_, *, cells, edit_layer, **kwargs):
        model = real_make(adata_, cells=cells, edit_layer=edit_layer, **kwargs)
        trained.append((model, cells.copy() if cells is not None else None))
        return model

    monkeypatch.setattr(tl_check, "trained_model", spy)
    used = []
    real_apply = sne.NeuronEditor.apply_edit

    def apply_spy(self, cells, edit, **kwargs):
        used.append((self, np.asarray(cells)))
        return real_apply(self, cells, edit, **kwargs)

    monkeypatch.setattr(sne.NeuronEditor, "apply_edit", apply_spy)
    sne.tl.predict_perturbation(adata, "condition", predict_for="E", self_check=True, **PERTURB,
                                **SMALL)
    target = (adata.obs["condition"] == "treated").to_numpy()
    groups = adata.obs["cell_type"].to_numpy()
    cells_of = {id(m): c for m, c in trained}
    checked = 0
    for model, rows in used:
        if model.edit_layer == "input" or id(model) not in cells_of:
            continue  # the input layer learns nothing; the last call is the real prediction
        (group,) = set(groups[rows])
        assert not (cells_of[id(model)] & target & (groups == group)).any(), group
        checked += 1
    assert checked == 4  # every inner group, with an autoencoder
    assert sum(m.edit_layer != "input" for m, _ in trained) == 2  # two extra fits, not one per group


def test_fewer_than_three_groups_is_a_clear_error():
    adata = _cells(3.0, n_types="ABC")
    snap = snapshot(adata)
    with pytest.raises(ValueError, match=r"at least 3 groups .* there are 2 \(A, B\)"):
        sne.tl.predict_perturbation(adata, "condition", predict_for="C", edit_layer="auto",
                                    **PERTURB, **SMALL)
    assert_unchanged(adata, snap)


def test_auto_refuses_a_given_model():
    adata = _cells(3.0, n=20)
    model = sne.NeuronEditor(adata, hidden=(8,), n_latent=4).train(max_epochs=1, progress=False)
    with pytest.raises(ValueError, match="edit_layer='auto' .* cannot use a given model"):
        sne.tl.predict_perturbation(adata, "condition", predict_for="E", edit_layer="auto",
                                    model=model, **PERTURB, progress=False)


def _skills(per_candidate: dict) -> pd.DataFrame:
    """A check table from ``{candidate: skill per group}`` (no-change error 1)."""
    rows = []
    for candidate, skills in per_candidate.items():
        rows += [dict(group=f"g{g}", candidate=candidate, population="all", skill=s, error=1 - s)
                 for g, s in enumerate(skills)]
    return pd.DataFrame(rows)


def test_paired_rule_takes_a_small_consistent_gain_the_one_se_rule_misses():
    """Groups differ a lot in difficulty (skill 0.2 to 0.8); the input layer is better by
    0.03 in every one of them. Paired, that is unmistakable; compared by each candidate's
    own standard error (0.11), it is not."""
    base = np.array([0.2, 0.45, 0.8, 0.6, 0.3, 0.7])
    noise = np.array([0.001, -0.002, 0.0, 0.002, -0.001, 0.0])
    table = _skills({"input, pooled": base + 0.03 + noise, "bottleneck, pooled": base})
    chosen, summary = _self_check_choice.choose(table, "bottleneck, pooled")
    assert chosen == "input, pooled"
    comparison = summary["comparison"].set_index("candidate")
    assert comparison.loc["input, pooled", "gain"] == pytest.approx(0.03)
    assert comparison.loc["input, pooled", "gain_se"] < 0.002
    assert comparison.loc["input, pooled", "clearly_better"]
    assert not comparison.loc["bottleneck, pooled", "clearly_better"]
    # the unpaired rule: a gain within one of the candidates' own SEs is no reason to switch
    own_se = base.std(ddof=1) / np.sqrt(len(base))
    assert 0.03 < own_se
    # without switching (the caller fixed its layer) the default is kept, the gain reported
    kept, fixed = _self_check_choice.choose(table, "bottleneck, pooled", switch=False)
    assert kept == "bottleneck, pooled" and fixed["comparison"]["clearly_better"].any()


def test_paired_rule_keeps_the_default_unless_the_gain_is_clear():
    """A better mean that some groups contradict is not enough with 5 groups: the gain must
    exceed the one-sided t quantile (10 %) times its SE."""
    base = np.array([0.5, 0.6, 0.4, 0.7, 0.55])
    table = _skills({"input, pooled": base + np.array([0.15, -0.08, 0.12, -0.05, 0.10]),
                     "bottleneck, pooled": base})
    chosen, summary = _self_check_choice.choose(table, "bottleneck, pooled")
    row = summary["comparison"].set_index("candidate").loc["input, pooled"]
    assert row["gain"] > 0 and row["gain"] < row["threshold"]
    assert chosen == "bottleneck, pooled" and summary["default"] == chosen
    # the threshold is the one-sided t quantile for 4 degrees of freedom at 10 %
    from scipy import stats
    assert row["threshold"] == pytest.approx(stats.t.ppf(0.90, 4) * row["gain_se"])


def test_skill_interval_is_a_prediction_interval_for_one_more_group():
    skills = np.array([0.19, 0.31, 0.36, 0.5])
    low, high = _self_check_choice.skill_interval(skills)
    from scipy import stats
    half = stats.t.ppf(0.95, 3) * skills.std(ddof=1) * np.sqrt(1 + 1 / 4)
    assert (low, high) == pytest.approx((skills.mean() - half, skills.mean() + half))
    # wider than mean ± 2 SE of the mean, which is what the check reported before
    assert high - low > 2 * 2 * skills.std(ddof=1) / 2
    assert np.isnan(_self_check_choice.skill_interval([0.4])).all()


def test_no_response_is_not_vouched_and_a_strong_response_is():
    """No effect: the interval includes 0 and one warning, pointing at this line, says the
    prediction may be worse than no change. A strong, consistent response: no warning."""
    adata = _cells(0.0, n=80)
    with pytest.warns(UserWarning, match="cannot vouch for this prediction") as record:
        sne.tl.predict_perturbation(adata, "condition", predict_for="E", edit_layer="input",
                                    self_check=True, **PERTURB, **SMALL)
    vouch = [w for w in record if "vouch" in str(w.message)]
    assert len(vouch) == 1 and vouch[0].filename == __file__
    summary = adata.uns["predicted_perturbation"]["self_check_summary"]
    low, high = summary["skill_interval"]
    assert low <= 0 <= high and not summary["vouched"] and summary["interval_level"] == 0.9

    strong = _cells(3.0, n=80)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        sne.tl.predict_perturbation(strong, "condition", predict_for="E", edit_layer="input",
                                    population_key="population", self_check=True, **PERTURB,
                                    **SMALL)
    summary = strong.uns["predicted_perturbation"]["self_check_summary"]
    assert summary["vouched"] and summary["skill_interval"][0] > 0
    pops = summary["populations"].set_index("population")
    # the responding population is vouched for; the untouched one has nothing to predict
    assert pops.loc["P", "vouched"] and pops.loc["P", "low"] > 0.5
    assert not pops.loc["Q", "vouched"]


def test_neuron_edit_self_check_needs_groups():
    adata = _cells(3.0, n=20)
    with pytest.raises(ValueError, match="pass groupby="):
        sne.tl.neuron_edit(adata, {"condition": "control"}, {"condition": "treated"},
                           apply_to={"condition": "control"}, self_check=True, **SMALL)


def test_batch_correct_auto_checks_on_split_reference_cells():
    """Four batches shifting population 'P' only, by different amounts, onto batch b0: the
    split-half proxy finds within-population edits better in every batch (the paired rule
    needs that), with the batches' spreads closer to b0's than uncorrected."""
    rng = np.random.default_rng(0)
    blocks, obs = [], []
    for b, shift in (("b0", 0.0), ("b1", 1.5), ("b2", 2.0), ("b3", 2.5), ("b4", 1.75)):
        for pop, offset in (("P", 2.0), ("Q", -2.0)):
            for ref in (True, False):
                x = rng.normal(0, 1, size=(120, 5))
                x[:, 1:] += offset
                if pop == "P":
                    x[:, 0] += shift
                blocks.append(x)
                obs += [(b, pop, ref)] * 120
    obs = pd.DataFrame(obs, columns=["batch", "population", "reference"])
    obs["batch"], obs["population"] = obs["batch"].astype("category"), obs["population"].astype("category")
    obs.index = [f"c{i}" for i in range(len(obs))]
    adata = ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs)
    sne.tl.batch_correct(adata, "batch", reference_key="reference", reference_value=True,
                         population_key="population", edit_layer="auto", reference_batch="b0",
                         **SMALL)
    uns = adata.uns["batch_corrected"]
    table, summary = uns["self_check"], uns["self_check_summary"]
    assert set(table.group) == {"b1", "b2", "b3", "b4"} and "spread_gap" in table
    assert summary["chosen"].endswith("within populations")
    assert summary["expected_spread_gap"] <= summary["no_change_spread_gap"]
    assert summary["expected_skill"] > 0.5
    assert set(summary["paired"]) == {c for c in table.candidate.unique()
                                      if c not in ("no change", "bottleneck, pooled")}


def _batch_table(skill: dict, gap: dict, no_change_gap=(0.2, 0.2, 0.2, 0.2)):
    """Four batches; per candidate a skill and a spread gap per batch (scalars repeat)."""
    rows = []
    for i, b in enumerate(("b1", "b2", "b3", "b4")):
        rows.append(dict(group=b, candidate="no change", population="all", error=1.0, skill=0.0,
                         spread_gap=no_change_gap[i]))
        for c in skill:
            s, g = (np.broadcast_to(v[c], 4)[i] for v in (skill, gap))
            rows.append(dict(group=b, candidate=c, population="all", error=1 - s, skill=s,
                             spread_gap=g))
    return pd.DataFrame(rows)


def test_batch_rule_keeps_the_default_unless_another_is_clearly_better():
    gap = {"input, pooled": 0.1, "bottleneck, pooled": 0.1}
    # higher on average, but not in every batch: the paired gain is not clear
    noisy = _batch_table({"input, pooled": [0.9, 0.5, 0.9, 0.5], "bottleneck, pooled": 0.7}, gap)
    chosen, summary = _self_check_batches.choose_for_batches(noisy)
    assert chosen == "bottleneck, pooled" and summary["spread_guard"] == "kept"
    paired = summary["paired"]["input, pooled"]
    assert paired["gain"] == pytest.approx(0.0) and paired["gain_se"] > 0
    # a small gain, but in every batch alike: clearly better
    steady = _batch_table({"input, pooled": [0.75, 0.76, 0.74, 0.75], "bottleneck, pooled": 0.7}, gap)
    chosen, summary = _self_check_batches.choose_for_batches(steady)
    assert chosen == "input, pooled" and summary["paired"]["input, pooled"]["t"] > 5
    assert summary["next_best"] == "bottleneck, pooled" and summary["n_groups"] == 4
    # the same gain with a larger spread gap than the default's is not taken
    wider = _batch_table({"input, pooled": [0.75, 0.76, 0.74, 0.75], "bottleneck, pooled": 0.7},
                         {"input, pooled": 0.15, "bottleneck, pooled": 0.1})
    assert _self_check_batches.choose_for_batches(wider)[0] == "bottleneck, pooled"
    # no skill lost, the spread gap lower in every batch: clearly better on the other score
    closer = _batch_table({"input, pooled": [0.71, 0.70, 0.72, 0.70], "bottleneck, pooled": 0.7},
                          {"input, pooled": [0.05, 0.06, 0.04, 0.05], "bottleneck, pooled": 0.1})
    chosen, summary = _self_check_batches.choose_for_batches(closer)
    assert chosen == "input, pooled" and summary["paired"][chosen]["spread_gain"] == pytest.approx(0.05)
    # ... but not when it costs skill on average
    costly = _batch_table({"input, pooled": [0.69, 0.68, 0.70, 0.69], "bottleneck, pooled": 0.7},
                          {"input, pooled": [0.05, 0.06, 0.04, 0.05], "bottleneck, pooled": 0.1})
    assert _self_check_batches.choose_for_batches(costly)[0] == "bottleneck, pooled"


def test_batch_rule_never_chooses_a_candidate_that_widens_the_spread_gap():
    skill = {"input, pooled": 0.9, "input, within populations": 0.6, "bottleneck, pooled": 0.7,
             "bottleneck, within populations": 0.8}
    # input, pooled is clearly best by skill but widens the gap over no change (0.25 > 0.2)
    gap = {"input, pooled": 0.25, "input, within populations": 0.1, "bottleneck, pooled": 0.1,
           "bottleneck, within populations": 0.15}
    chosen, summary = _self_check_batches.choose_for_batches(_batch_table(skill, gap))
    # (bottleneck, within populations gains in every batch but its gap is wider than the default's)
    assert chosen == "bottleneck, pooled"
    # the default widens it: the eligible candidate of highest skill replaces it
    gap["bottleneck, pooled"] = 0.3
    chosen, summary = _self_check_batches.choose_for_batches(_batch_table(skill, gap))
    assert chosen == "bottleneck, within populations" and summary["spread_guard"] == "default widens"
    assert summary["expected_spread_gap"] == pytest.approx(0.15)
    assert summary["no_change_spread_gap"] == pytest.approx(0.2)
    # all widen it: the default stays, and the summary says so
    chosen, summary = _self_check_batches.choose_for_batches(
        _batch_table(skill, dict.fromkeys(skill, 0.3)))
    assert chosen == "bottleneck, pooled" and summary["spread_guard"] == "none keeps"


def _drugs(n: int = 120, seed: int = 0):
    """Control and two single drugs in 2 populations; drug A adds 3 to feature 0 of
    population 'P' only, drug B adds 3 to feature 5 of 'P' only."""
    rng = np.random.default_rng(seed)
    blocks, obs = [], []
    for cond, feature in (("control", None), ("A", 0), ("B", 5)):
        for pop, offset in (("P", 2.0), ("Q", -2.0)):
            x = rng.normal(0, 1, size=(n, 6))
            x[:, 1:5] += offset
            if feature is not None and pop == "P":
                x[:, feature] += 3.0
            blocks.append(x)
            obs += [(pop, cond)] * n
    obs = pd.DataFrame(obs, columns=["population", "condition"]).astype("category")
    obs.index = [f"c{i}" for i in range(len(obs))]
    return ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs,
                      var=pd.DataFrame(index=[f"f{j}" for j in range(6)]))


def test_combination_self_check_scores_each_drug_on_cells_no_model_saw(monkeypatch):
    """Each single drug's edit is scored on held-out halves; the one extra autoencoder never
    saw the held-out drug cells it is scored on; a population-confined effect makes the
    within-population candidates win, and "auto" predicts with them."""
    adata = _drugs()
    trained = []
    real_make = tl_check.trained_model

    def spy(adata_, *, cells, edit_layer, **kwargs):
        trained.append((edit_layer, None if cells is None else cells.copy()))
        return real_make(adata_, cells=cells, edit_layer=edit_layer, **kwargs)

    monkeypatch.setattr(tl_check, "trained_model", spy)
    scored = []
    real_records = _self_check.scored_records

    def records_spy(group, scored_, real, populations, apply_rows, real_rows, random_state):
        scored.append((group, real_rows))
        return real_records(group, scored_, real, populations, apply_rows, real_rows, random_state)

    monkeypatch.setattr(_self_check, "scored_records", records_spy)
    sne.tl.predict_combination(adata, "condition", control="control", drug_a="A", drug_b="B",
                               population_key="population", edit_layer="auto", **SMALL)
    uns = adata.uns["combination"]
    table, summary = uns["self_check"], uns["self_check_summary"]
    assert set(table.group) == {"A", "B"} and summary["n_groups"] == 2
    assert summary["chosen"].endswith("within populations")
    assert uns["params"]["within_populations"]
    bottleneck = [cells for layer, cells in trained if layer == "bottleneck"]
    assert len(bottleneck) == 1  # one extra fit for the check
    condition = adata.obs["condition"].to_numpy()
    for drug, real_rows in scored:
        assert (condition[real_rows] == drug).all()
        assert not bottleneck[0][real_rows].any()  # never trained on the cells it is scored on
        assert len(real_rows) == (condition == drug).sum() // 2


def test_combination_self_check_is_off_by_default():
    adata = _drugs(n=60)
    sne.tl.predict_combination(adata, "condition", control="control", drug_a="A", drug_b="B",
                               **SMALL)
    assert "self_check" not in adata.uns["combination"]
