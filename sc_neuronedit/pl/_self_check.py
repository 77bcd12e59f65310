"""The self-check's table as a plot: skill per group and candidate, and the choice."""

from __future__ import annotations

import numpy as np

from .. import _self_check as check
from .. import _self_check_choice as choice
from ._common import documented, finish, panels, result

#: The heatmap's colour scale: skill is at most 1; below -1 (twice the no-change error) the
#: colour saturates, and the annotation still gives the value.
SKILL_LIMIT = 1.0
#: Up to this many groups, each gets its own colour and a legend entry.
MAX_LABELLED_GROUPS = 8
CHOSEN_SUFFIX = " (chosen)"


def _checked(adata, key):
    res = result(adata, key)
    if "self_check" not in res:
        raise ValueError(
            f"adata.uns[{key!r}] holds no self-check table; run the tl function "
            "(tl.predict_perturbation, tl.neuron_edit with groupby=, tl.batch_correct, "
            "tl.predict_combination, tl.synergy) with self_check=True or edit_layer='auto'.")
    return res["self_check"], res.get("self_check_summary") or {}


def _chosen(table, summary) -> str | None:
    if summary.get("chosen"):
        return str(summary["chosen"])
    if "chosen" in table:
        names = table.loc[table["chosen"].astype(bool), "candidate"].unique()
        if len(names):
            return str(names[0])
    return None


def _label_rows(ax, names, chosen, *, labels=True):
    """Candidates top to bottom (cheapest first), the chosen one in bold."""
    ax.set_yticks(range(len(names)))
    if not labels:
        ax.set_yticklabels([])
        return
    ax.set_yticklabels([n + CHOSEN_SUFFIX if n == chosen else n for n in names], fontsize=9)
    for tick, name in zip(ax.get_yticklabels(), names):
        if name == chosen:
            tick.set_fontweight("bold")


@documented
def self_check(adata, key: str = "predicted_perturbation", *, ax=None, show: bool | None = None,
               save=None):
    """The self-check's skill of every candidate, per group, and the choice it made.

    Left: one row per candidate (cheapest first), a dot per inner group at its
    skill = 1 − error / no-change error (with populations: the mean of the
    populations' skills, as the choice uses it), and the mean over groups
    with the interval one more group's skill is expected in (black; the
    prediction interval the summary reports, 90 %). Skill 0 (dashed) is no
    better than leaving the cells as they are; 1 is a perfect prediction.
    The chosen candidate is in bold; at the panel's right edge, above each
    row, its paired gain over the default candidate (mean of the per-group
    differences) and the gain it would need to replace the default (✓ when
    it does). Right, when the check scored populations: the mean skill over
    groups per population and candidate (colours saturate below −1); for
    batch correction instead: each candidate's mean spread gap
    (:func:`~sc_neuronedit.metrics.spread_gap` of the corrected held-out
    reference halves against the goal's spread) beside the uncorrected one
    (dashed): the batch rule chooses a candidate past that line (red) only
    when every candidate is, with a warning.

    Parameters
    ----------
    adata
        AnnData holding the result of :func:`~sc_neuronedit.tl.predict_perturbation`,
        :func:`~sc_neuronedit.tl.neuron_edit` (with ``groupby``),
        :func:`~sc_neuronedit.tl.batch_correct`,
        :func:`~sc_neuronedit.tl.predict_combination` or
        :func:`~sc_neuronedit.tl.synergy` (the groups are then the single drugs)
        run with ``self_check=True`` or ``edit_layer="auto"``.
    key
        The ``key_added`` of that run.
    {common_params}

    {figure_returns}

    Examples
    --------
    >>> import sc_neuronedit as sne
    >>> cytof = sne.datasets.bodenmiller_bcrxl()
    >>> sne.pp.arcsinh(cytof, 5)
    >>> sne.pp.populations(cytof, cytof.var["marker_class"] == "type", 10, layer="arcsinh")
    >>> sne.tl.predict_perturbation(
    ...     cytof, "condition", control="Ref", perturbed="BCRXL", groupby="patient_id",
    ...     predict_for="Patient1", layer="arcsinh", population_key="population",
    ...     edit_layer="auto")
    >>> fig = sne.pl.self_check(cytof)
    """
    table, summary = _checked(adata, key)
    rows = table[table["candidate"] != "no change"]
    names = list(dict.fromkeys(rows["candidate"].astype(str)))
    chosen = _chosen(table, summary)
    per_group = check.group_skill(table)
    per_group["candidate"] = per_group["candidate"].astype(str)
    groups = list(dict.fromkeys(per_group["group"].astype(str)))
    populations = [p for p in dict.fromkeys(rows["population"].astype(str)) if p != "all"]
    second = ("spread" if "spread_gap" in table else "populations" if populations else None)

    n_rows = len(names)
    height = max(3.0, 0.55 * n_rows + 2.2)
    if second == "populations":
        widths = [6.0, max(2.8, 0.75 * len(populations) + 1.6)]
    else:
        widths = [6.0, 3.6][: 1 + (second is not None)]
    fig, axes, created = panels(
        ax, len(widths), ncols=len(widths), panel_size=(float(np.mean(widths)), height),
        **({"gridspec_kw": {"width_ratios": widths}} if len(widths) > 1 else {}))

    _skill_panel(axes[0], per_group, names, groups, chosen, summary)
    if second == "populations":
        _population_panel(fig, axes[1], rows, names, populations, chosen, labels=not created)
    elif second == "spread":
        _spread_panel(axes[1], table, names, chosen, labels=not created)
    return finish(fig, show=show, save=save, name="self_check", tight=created)


def _skill_panel(ax, per_group, names, groups, chosen, summary):
    from matplotlib.lines import Line2D

    y_of = {n: i for i, n in enumerate(names)}
    labelled = len(groups) <= MAX_LABELLED_GROUPS
    offsets = np.linspace(-0.18, 0.18, len(groups)) if len(groups) > 1 else np.zeros(1)
    handles = []
    for i, g in enumerate(groups):
        part = per_group[per_group["group"].astype(str) == g]
        colour = f"C{i % 10}" if labelled else "0.55"
        ax.scatter(part["skill"], [y_of[c] + offsets[i] for c in part["candidate"]], s=22,
                   color=colour, alpha=0.85, linewidths=0, zorder=2)
        if labelled:
            handles.append(Line2D([], [], ls="", marker="o", ms=5, color=colour, label=g))
    by = per_group.groupby("candidate", sort=False)["skill"]
    mean = by.mean().reindex(names)
    interval = np.array([choice.skill_interval(by.get_group(n)) for n in names])
    ys = np.arange(len(names))
    ax.hlines(ys, interval[:, 0], interval[:, 1], color="black", lw=2.2, zorder=3,
              gid="self_check_interval")
    ax.plot(mean.to_numpy(), ys, ls="", marker="|", ms=14, mew=2.2, color="black", zorder=4,
            gid="self_check_mean")
    handles.append(Line2D([], [], color="black", lw=2.2, marker="|", ms=10, mew=2.2,
                          label=f"mean, {choice.INTERVAL_LEVEL:.0%} interval"))
    if "comparison" in summary:
        _gain_notes(ax, summary, y_of)
    ax.axvline(0, color="0.4", ls="--", lw=1, zorder=1)
    ax.annotate("no change", (0, 1), xycoords=ax.get_xaxis_transform(), xytext=(-2, -3),
                textcoords="offset points", rotation=90, ha="right", va="top", fontsize=8,
                color="0.35")
    if chosen in y_of:
        ax.axhspan(y_of[chosen] - 0.45, y_of[chosen] + 0.45, color="0.93", zorder=0)
    finite = interval[np.isfinite(interval)]
    lo = min(0.0, float(per_group["skill"].min()), *finite.tolist())
    hi = max(0.0, float(per_group["skill"].max()), *finite.tolist())
    pad = 0.08 * (hi - lo or 1.0)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(len(names) - 0.5, -0.5)
    _label_rows(ax, names, chosen)
    over = "mean of populations' skills" if summary.get("skill_over") == "populations" else None
    ax.set_xlabel("skill (1 − error / no-change error)" + (f"\n{over}, per group" if over else ""))
    ax.set_title(_title(summary, chosen), fontsize=10,
                 color="#b2182b" if summary.get("vouched") is False else "black")
    n = len(groups)
    legend_title = f"{n} group{'s' * (n != 1)}" + ("" if labelled else " (grey)")
    ax.legend(handles=handles, title=legend_title, fontsize=8, title_fontsize=8, frameon=False,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _title(summary, chosen) -> str:
    """The expected skill and its interval, and whether the check vouches for the choice."""
    if not chosen or "expected_skill" not in summary:
        return "self-check"
    if "skill_interval" not in summary:  # a result written before the interval existed
        return (f"expected skill {summary['expected_skill']:.2f} ± "
                f"{summary['expected_skill_se']:.2f} ({chosen})")
    low, high = summary["skill_interval"]
    verdict = "" if summary["vouched"] else ": may be worse than no change"
    return (f"expected skill {summary['expected_skill']:.2f} ({chosen})\n"
            f"{summary['interval_level']:.0%} interval {low:.2f} to {high:.2f}{verdict}")


def _gain_notes(ax, summary, y_of):
    """Each row's paired gain over the default, at the panel's right edge."""
    comparison = summary["comparison"]
    for row in comparison.itertuples():
        if row.candidate not in y_of:
            continue
        if row.candidate == summary.get("default"):
            note = "default"
        else:
            mark = " ✓" if row.clearly_better else ""
            note = f"gain {row.gain:+.3f} (needs > {row.threshold:.3f}){mark}".replace("-", "−")
        # above the row's dots (spread over +-0.18 of a row), inside its band
        ax.annotate(note, (1, y_of[row.candidate] - 0.36), xycoords=("axes fraction", "data"),
                    xytext=(-3, 0), textcoords="offset points", ha="right", va="center",
                    fontsize=7, color="0.25", gid="self_check_gain")


def _population_panel(fig, ax, rows, names, populations, chosen, *, labels):
    part = rows[rows["population"].astype(str) != "all"]
    mean = (part.assign(population=part["population"].astype(str),
                        candidate=part["candidate"].astype(str))
            .groupby(["candidate", "population"])["skill"].mean().unstack()
            .reindex(index=names, columns=populations))
    values = mean.to_numpy(dtype=float)
    image = ax.imshow(values, cmap="RdBu_r", vmin=-SKILL_LIMIT, vmax=SKILL_LIMIT, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}".replace("-", "\u2212"), ha="center", va="center", fontsize=8,
                    color="white" if abs(v) > 0.6 * SKILL_LIMIT else "black")
    ax.set_xticks(range(len(populations)), populations, rotation=90 if len(populations) > 6 else 0,
                  fontsize=8)
    ax.set_xlabel("population")
    _label_rows(ax, names, chosen, labels=labels)
    ax.set_title("mean skill over groups", fontsize=10)
    extend = "min" if np.nanmin(values) < -SKILL_LIMIT else "neither"
    fig.colorbar(image, ax=ax, label="skill", shrink=0.9, extend=extend)


def _spread_panel(ax, table, names, chosen, *, labels):
    gap = (table[table["population"].astype(str) == "all"]
           .assign(candidate=lambda t: t["candidate"].astype(str))
           .groupby("candidate")["spread_gap"].mean())
    uncorrected = float(gap["no change"])
    gap = gap.reindex(names)
    keeps = gap.to_numpy() <= uncorrected
    ax.barh(range(len(names)), gap.to_numpy(), height=0.55,
            color=np.where(keeps, "0.6", "#d6604d"), zorder=2)
    ax.axvline(uncorrected, color="black", ls="--", lw=1, zorder=3, gid="spread_limit")
    ax.annotate(f"uncorrected ({uncorrected:.2f})", (uncorrected, 1),
                xycoords=ax.get_xaxis_transform(), xytext=(3, -3), textcoords="offset points",
                rotation=90, ha="left", va="top", fontsize=8)
    ax.set_xlim(0, max(float(np.nanmax(gap.to_numpy())), uncorrected) * 1.25)
    ax.set_ylim(len(names) - 0.5, -0.5)
    _label_rows(ax, names, chosen, labels=labels)
    ax.set_xlabel("spread gap (mean relative MAD\ndistance from the goal's)")
    ax.set_title("spread gap (batch rule)", fontsize=10)