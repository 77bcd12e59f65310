"""Batch correction's self-check: a split-half proxy on the reference cells, and the rule
that guards the gap between the batches' spreads before it weighs skill.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats

from ._self_check import (
    Candidate,
    candidates,
    errors,
    model_columns,
    predictions,
    random_half,
    scoring_space,
    with_skill,
)
from ._self_check_choice import INTERVAL_LEVEL, paired_t, skill_interval

#: The batch rule's one-sided level: a candidate replaces the default only when its paired
#: skill gain over the batches is positive at this level (Student's t, batches - 1 degrees of
#: freedom). Fixed before any measurement: the conventional level, and with the 3 to 5 batches
#: of a typical design already a high bar (t > 2.35 with 4 batches), so the documented and
#: benchmarked default is only left on consistent evidence, never on one lucky batch.
BATCH_SWITCH_LEVEL = 0.05

#: The default candidate of ``batch_correct``: what the rule keeps without clear evidence.
BATCH_DEFAULT = Candidate("bottleneck", False).name


def split_half_batches(
    *,
    rows: Callable[[np.ndarray], np.ndarray],
    reference: np.ndarray,
    batches: np.ndarray,
    goal_batch,
    populations: np.ndarray | None,
    models: dict,
    learn_options: dict,
    apply_options: dict,
    finish: Callable[[np.ndarray, np.ndarray], None] | None = None,
    pooled_goal: str = "average",
    random_state: int = 0,
) -> pd.DataFrame:
    """Batch correction's proxy: learn each batch's edit on one half of its reference
    cells and score how well the other half is aligned to the goal's other half.

    Leaving a batch out would remove the reference cells its own correction needs,
    so the reference cells of every batch are split in half instead. The proxy is
    optimistic: the held-out half comes from the same sample as the half that
    taught the edit, where a real correction is applied to other samples.

    Two scores per batch and candidate: the distribution error, and the spread gap
    (:func:`sc_neuronedit.metrics.spread_gap`) of the corrected held-out half -- how
    far its per-feature spread (MAD) is from the goal's: the goal batch's held-out
    half, or with a pooled goal the mean over batches of the held-out halves' MADs.
    The batch effect changes spreads too, so a correction should close this gap;
    the ``"no change"`` rows hold the uncorrected gap, which a candidate must not
    widen. The goal's mixture of batches is not what is matched: its spread holds
    the between-batch shifts as well.

    Parameters
    ----------
    rows
        Dense values of the model's features for row indices.
    reference
        Boolean mask of the reference (spike-in) cells.
    batches
        Batch label per cell (strings).
    goal_batch
        The batch aligned to, or ``None`` for the batch-averaged reference (every batch weighing
        the same).
    populations
        Population label per cell, or ``None``.
    models
        ``{"input": model, "bottleneck": model}``: trained models on all cells.
    learn_options, apply_options
        Passed to ``learn_edit`` and ``apply_edit``.
    finish
        ``finish(values, rows)`` post-processes corrected full-width values in place as
        the correction itself does (``keep_zeros``), so that the proxy scores the output.
    pooled_goal
        With ``goal_batch=None``: ``"average"`` corrects towards each batch's learning
        half in turn and averages the corrections; ``"mixture"`` towards the learning
        halves pooled, every batch weighing the same (as ``batch_correct``'s option).

    Returns
    -------
    Long table, one row per corrected batch and candidate (and ``"no change"``):
    ``group`` (the batch), ``candidate``, ``population`` (``"all"``), ``error`` (energy
    distance of the corrected held-out half to the goal's held-out half; with the
    average goal, the mean of its distances to each batch's held-out half),
    ``no_change``, ``skill`` and ``spread_gap`` (the batch's gap of the held-out half).
    """
    from .metrics._distribution import mad_per_feature, spread_gap

    rng = np.random.default_rng(random_state)
    levels = np.unique(batches)
    learn_half = np.any([random_half(reference & (batches == b), rng) for b in levels], axis=0)
    held_half = reference & ~learn_half
    goal = reference if goal_batch is None else reference & (batches == str(goal_batch))
    cols = model_columns(models["input"])
    goal_values = rows(np.flatnonzero(goal & held_half))[:, cols]
    corrected = [b for b in levels if goal_batch is None or b != str(goal_batch)]
    if goal_batch is not None:
        goals = [(goal & learn_half, None)]
    elif pooled_goal == "mixture":
        goals = [(goal & learn_half, batches)]
    else:
        goals = [(learn_half & reference & (batches == c), None) for c in levels]
    scored = {}
    for b in corrected:
        apply_rows = np.flatnonzero(held_half & (batches == b))
        each = [predictions(candidates(populations is not None), models, rows,
                            learn_half & (batches == b), target, apply_rows, cols, groupby=groupby,
                            populations=populations, learn_options=learn_options,
                            apply_options=apply_options, finish=finish)
                for target, groupby in goals]
        scored[b] = {name: np.mean([e[name] for e in each], axis=0) for name in each[0]}
    # The goal spread: the goal batch's held-out half, or the batches' held-out halves
    # uncorrected, their MADs averaged (what the average goal has, every batch weighing
    # the same). Fixed for all candidates, so one that shrinks or inflates every batch
    # alike is not mistaken for one that makes them agree.
    if goal_batch is not None:
        goal_spread = mad_per_feature(goal_values)
    else:
        goal_spread = np.mean([mad_per_feature(scored[b]["no change"]) for b in corrected], axis=0)
    # Scored against what the correction aims at: each goal batch's held-out half (the
    # mean of the distances) for the average goal, else the goal's held-out half.
    aims = ([rows(np.flatnonzero(held_half & (batches == c)))[:, cols] for c in levels]
            if len(goals) > 1 else [goal_values])
    records = []
    for b in corrected:
        space = scoring_space(scored[b]["no change"], goal_values)
        for name, values in scored[b].items():
            error = float(np.mean([errors(space(values), space(aim), None, random_state)["all"]
                                   for aim in aims]))
            gap = spread_gap(values, np.zeros(len(values)), goal=goal_spread)
            records.append(dict(group=str(b), candidate=name, population="all", error=error,
                                spread_gap=gap))
    return with_skill(pd.DataFrame(records))


def choose_for_batches(table: pd.DataFrame, *, default: str = BATCH_DEFAULT,
                       level: float = BATCH_SWITCH_LEVEL) -> tuple[str, dict]:
    """Batch correction's choice, by distribution error and spread gap together.

    1. Guard: a candidate whose mean spread gap over batches is larger than the
       uncorrected one (the ``"no change"`` rows) makes the batches' spreads more
       unlike, not less: it is not eligible.
    2. Among the eligible, the ``default`` stays unless another candidate is clearly
       better, compared *paired* (all are scored on the same batches): its per-batch
       skill gains over the default are positive by a one-sided t test at ``level``
       (batches - 1 degrees of freedom), and its mean spread gap is no larger than the
       default's; or its per-batch spread gap reductions are positive by the same test
       and its mean skill gain is not negative (both scores count, neither alone may
       buy a loss on the other). Of several such, the largest mean skill gain wins.
    3. If the default itself widens the spread gap, it is not kept: the eligible
       candidate of highest mean skill is chosen. If none is eligible, the default
       is kept and ``summary["spread_guard"]`` says so.

    Parameters
    ----------
    table
        The long table of :func:`split_half_batches`.
    default
        The candidate kept without clear evidence against it.
    level
        One-sided level of the paired test (:data:`BATCH_SWITCH_LEVEL`).

    Returns
    -------
    ``(chosen, summary)``: ``summary`` holds ``chosen``, ``expected_skill`` (± ``_se``),
    its ``skill_interval`` and ``vouched`` (as in :func:`choose`), ``expected_error``,
    ``expected_spread_gap``, ``no_change_spread_gap``,
    ``spread_guard`` (``"kept"``: the chosen candidate does not widen the gap;
    ``"default widens"``: the default did and was replaced; ``"none keeps"``),
    ``next_best`` (by mean skill) and its skill, ``n_groups``, ``level`` and
    ``paired``: per other candidate, the mean per-batch skill gain over the default
    (``gain``, ``gain_se``, ``t``), the mean per-batch reduction of the spread gap
    (``spread_gain``, ``spread_gain_se``, ``spread_gain_t``) and its mean spread gap.
    """
    overall = table[table.population == "all"]
    skill, gaps = (overall.pivot_table(index="group", columns="candidate", values=v, sort=False)
                   for v in ("skill", "spread_gap"))
    gap = gaps.mean()
    error = overall.groupby("candidate", sort=False)["error"].mean()
    names = [c for c in skill.columns if c != "no change"]
    n = len(skill)
    mean, se = skill.mean(), skill.std(ddof=1) / np.sqrt(n)
    eligible = [c for c in names if gap[c] <= gap["no change"]]
    paired = {c: {**_paired(skill[c] - skill[default], "gain"),
                  **_paired(gaps[default] - gaps[c], "spread_gain"), "spread_gap": float(gap[c])}
              for c in names if c != default}
    critical = stats.t.ppf(1 - level, n - 1) if n > 1 else np.inf

    def clearly_better(c):  # on one score, and not worse on average on the other
        p = paired[c]
        return ((p["t"] > critical and p["spread_gain"] >= 0)
                or (p["spread_gain_t"] > critical and p["gain"] >= 0))

    if default in eligible:
        clearly = [c for c in eligible if c in paired and clearly_better(c)]
        chosen = max(clearly, key=lambda c: paired[c]["gain"]) if clearly else default
        guard = "kept"
    elif eligible:
        chosen, guard = max(eligible, key=lambda c: mean[c]), "default widens"
    else:
        chosen, guard = default, "none keeps"
    runner_up = max((c for c in names if c != chosen), key=lambda c: mean[c], default=None)
    low, high = skill_interval(skill[chosen])
    summary = {"chosen": chosen, "expected_skill": float(mean[chosen]),
               "expected_skill_se": float(se[chosen]),
               "skill_interval": np.array([low, high]), "interval_level": INTERVAL_LEVEL,
               "vouched": bool(low > 0), "expected_error": float(error[chosen]),
               "expected_spread_gap": float(gap[chosen]),
               "no_change_spread_gap": float(gap["no change"]), "spread_guard": guard,
               "next_best": runner_up,
               "next_best_skill": None if runner_up is None else float(mean[runner_up]),
               "n_groups": int(n), "level": level, "paired": paired}
    return chosen, summary


def _paired(diff: pd.Series, name: str) -> dict:
    """:func:`paired_t` of one series of per-batch differences, named ``name``, ``name_se``
    and ``t`` for the skill gain, ``name_t`` otherwise."""
    mean, se, t = (float(v) for v in paired_t(diff.to_frame()).iloc[0])
    return {name: mean, f"{name}_se": se, "t" if name == "gain" else f"{name}_t": t}
