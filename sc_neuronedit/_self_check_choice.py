"""The self-check's choice: which candidate to use, and how good its prediction is likely
to be.

A paired comparison over the inner groups decides whether another candidate replaces
the call's default; a t prediction interval for one more group says how far the
chosen candidate's skill can be trusted. Tables in (from :mod:`sc_neuronedit._self_check`),
a choice and a summary out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ._self_check import Candidate, group_skill

#: One-sided level at which another candidate must beat the default to replace it, for
#: each alternative on its own. A switch between candidates that are in truth equal costs
#: nothing, so the error that matters is taking one that is worse, which each alternative
#: commits at most at this rate (under the t model), however many there are; dividing the
#: level among them (first tried, at 5 %) kept the default on BCR-XL where every inner
#: patient rated the input layer better (t = 1.6-3.2 at 4 degrees of freedom).
SWITCH_LEVEL = 0.10
#: Nominal coverage of the reported skill interval: a t prediction interval for one more
#: group (the held-out one), two-sided.
INTERVAL_LEVEL = 0.90


def default_candidate(edit_layer, with_populations: bool) -> str:
    """The candidate a call uses without the check's advice: its own ``edit_layer`` (a
    hidden layer is scored as the bottleneck, the nearest candidate), within populations
    when they are given."""
    layer = "input" if edit_layer == "input" else "bottleneck"
    return Candidate(layer, with_populations).name


def paired_gains(per_group: pd.DataFrame, default: str) -> pd.DataFrame:
    """Each candidate's mean skill and its gain over ``default``, paired by inner group.

    The candidates are scored on the same inner groups, so the groups' differences in
    difficulty cancel in the per-group differences: their standard error is the one a
    choice between candidates needs, not the candidates' own (which counts that
    difficulty twice and hides a small, consistent gain).

    Returns
    -------
    DataFrame indexed by candidate (the table's order): ``skill`` (mean over groups),
    ``gain`` (mean of the per-group differences to the default), ``gain_se`` (their
    standard error), ``threshold`` (``gain_se`` times the one-sided t quantile at
    :data:`SWITCH_LEVEL`, ``n_groups - 1`` degrees of freedom; infinite with one group)
    and ``clearly_better`` (``gain > threshold``).
    """
    wide = per_group.pivot(index="group", columns="candidate", values="skill")
    wide = wide[list(dict.fromkeys(per_group["candidate"]))].dropna()
    n = len(wide)
    paired = paired_t(wide.sub(wide[default], axis=0))
    gain_se = paired["se"].fillna(np.inf)  # one group: no standard error, nothing is clear
    quantile = stats.t.ppf(1 - SWITCH_LEVEL, n - 1) if n > 1 else np.inf
    out = pd.DataFrame({"skill": wide.mean(), "gain": paired["mean"], "gain_se": gain_se})
    out["threshold"] = np.where(gain_se > 0, quantile * gain_se, 0.0)
    out["clearly_better"] = (paired["t"] > quantile) & (out.index != default)
    out.index.name = "candidate"
    return out


def paired_t(diff: pd.DataFrame) -> pd.DataFrame:
    """Per column of per-group differences: their ``mean``, its standard error ``se`` and
    ``t = mean / se``. The same nonzero difference in every group is as clear as it gets
    (``t`` infinite, of its sign); one group allows no test (``se`` and ``t`` NaN)."""
    n = len(diff)
    mean = diff.mean()
    se = diff.std(ddof=1) / np.sqrt(n) if n > 1 else mean * np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, mean / se,
                     np.where(se == 0, np.where(mean != 0, np.sign(mean) * np.inf, 0.0), np.nan))
    return pd.DataFrame({"mean": mean, "se": se, "t": t})


def skill_interval(skills) -> tuple[float, float]:
    """The :data:`INTERVAL_LEVEL` t prediction interval of one more group's skill from the
    inner groups' skills: ``mean ± t s sqrt(1 + 1/n)``. It widens with few groups and with
    unlike groups, as a standard error of the mean does not (with 4 inner groups a mean's
    SE is a quarter as wide). The upper end is at most 1, a perfect prediction. NaN with
    fewer than 2 groups."""
    skills = np.asarray(skills, dtype=float)
    skills = skills[np.isfinite(skills)]
    n = len(skills)
    if n < 2:
        return float("nan"), float("nan")
    half = (stats.t.ppf(0.5 + INTERVAL_LEVEL / 2, n - 1) * skills.std(ddof=1)
            * np.sqrt(1 + 1 / n))
    return float(skills.mean() - half), float(min(skills.mean() + half, 1.0))  # skill <= 1


def population_skill(table: pd.DataFrame, candidate: str) -> pd.DataFrame:
    """Per population, ``candidate``'s mean skill over the inner groups, its
    :func:`skill_interval` (``low``, ``high``) and ``vouched`` (``low > 0``); empty
    without populations."""
    rows = table[(table["candidate"] == candidate) & (table["population"] != "all")]
    records = []
    for population, part in rows.groupby("population", sort=False):
        low, high = skill_interval(part["skill"])
        records.append(dict(population=str(population), skill=float(part["skill"].mean()),
                            low=low, high=high, n_groups=len(part), vouched=bool(low > 0)))
    return pd.DataFrame(records, columns=["population", "skill", "low", "high", "n_groups",
                                          "vouched"])


def choose(table: pd.DataFrame, default: str, *, switch: bool = True) -> tuple[str, dict]:
    """Keep ``default`` unless another candidate is clearly better in a paired comparison
    (:func:`paired_gains`); with ``switch=False`` (the caller fixed its edited layer) the
    comparison is only reported.

    Returns the chosen candidate and the summary: its mean skill over the inner groups
    and that mean's standard error, the :data:`INTERVAL_LEVEL` prediction interval of a
    new group's skill (``skill_interval``) and ``vouched`` (the interval's lower end
    above 0: the prediction is expected to beat leaving the cells as they are), the
    paired comparison of every candidate (``comparison``), and with populations each
    population's interval (``populations``).
    """
    per_group = group_skill(table)
    if default not in set(per_group["candidate"]):
        raise ValueError(f"The default candidate {default!r} was not scored; scored: "
                         f"{', '.join(dict.fromkeys(per_group['candidate']))}.")
    comparison = paired_gains(per_group, default)
    better = comparison[comparison["clearly_better"]]
    chosen = better["gain"].idxmax() if switch and len(better) else default
    skills = per_group.loc[per_group["candidate"] == chosen, "skill"]
    low, high = skill_interval(skills)
    ranked = comparison["skill"].sort_values(ascending=False)
    runner_up = next((c for c in ranked.index if c != chosen), None)
    pops = population_skill(table, chosen)
    summary = {"chosen": chosen, "default": default,
               "expected_skill": float(skills.mean()),
               "expected_skill_se": float(skills.std(ddof=1) / np.sqrt(len(skills)))
               if len(skills) > 1 else float("nan"),
               "skill_interval": np.array([low, high]), "interval_level": INTERVAL_LEVEL,
               "vouched": bool(low > 0), "switch_level": SWITCH_LEVEL,
               "expected_error": float(per_group.loc[per_group["candidate"] == chosen,
                                                     "error"].mean()),
               "skill_over": "populations" if (table.population != "all").any() else "all cells",
               "next_best": runner_up,
               "next_best_skill": None if runner_up is None else float(ranked[runner_up]),
               "n_groups": int(per_group.group.nunique()),
               "comparison": comparison.reset_index()}
    if len(pops):
        summary["populations"] = pops
    return chosen, summary


def unvouched_populations(summary: dict) -> list[str]:
    """Populations whose skill interval reaches 0 (empty without populations)."""
    pops = summary.get("populations")
    if pops is None:
        return []
    return [str(p) for p in pops.loc[~pops["vouched"].astype(bool), "population"]]


def unvouched_message(summary: dict, what: str = "prediction") -> str | None:
    """Plain words for a check that cannot vouch for the ``what`` (its skill interval
    reaches 0: it may be worse than leaving the cells as they are), or ``None``.

    Populations are named in the message when the whole prediction is in doubt; alone
    they do not raise it: in a population the perturbation leaves unchanged, no change
    is already right, so the skill there is 0 within noise whatever the prediction.
    """
    if summary["vouched"]:
        return None
    low, high = summary["skill_interval"]
    weak = unvouched_populations(summary)
    where = (f" The interval reaches 0 in population{'s' * (len(weak) > 1)} "
             f"{', '.join(weak)} too." if weak else "")
    return (f"The self-check cannot vouch for this {what} ({summary['chosen']}): its "
            f"expected skill's {summary['interval_level']:.0%} interval over its "
            f"{summary['n_groups']} held-out groups is {low:.2f} to {high:.2f}, so it may be worse "
            f"than leaving the cells as they are.{where} The summary "
            "(self_check_summary in the result's .uns entry) and sne.pl.self_check show why.")


def summary_line(summary: dict) -> str:
    line = f"expected skill {summary['expected_skill']:.2f}"
    if "skill_interval" in summary:
        low, high = summary["skill_interval"]
        line += f" ({summary['interval_level']:.0%} interval {low:.2f} to {high:.2f})"
    else:
        line += f" ± {summary['expected_skill_se']:.2f}"
    line += f" ({summary['chosen']})"
    if summary["next_best"] is not None:
        line += f"; next best: {summary['next_best']}, {summary['next_best_skill']:.2f}"
    return line
