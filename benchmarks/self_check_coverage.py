"""Is the self-check's skill interval honest, and is ``edit_layer="auto"`` never worse than
the default beyond noise? Pooled over the per-group tables that ``self_check.py`` wrote.

Reads every ``benchmarks/results/self_check_*.groups.csv`` (one row per held-out group:
the chosen candidate, its reported interval ``low``-``high``, the real held-out skill of
that candidate, and the held-out energy distance of ``auto``'s and the default's
predictions) and reports, per file and over all:

- coverage of the reported interval (nominal :data:`sc_neuronedit._self_check_choice.INTERVAL_LEVEL`),
  with the misses split into real skill above the interval (the check was pessimistic) and
  below it (optimistic: the harmful side);
- ``auto`` minus default in mean held-out energy, and in how many groups ``auto`` is worse
  by more than 0.01.

    python benchmarks/self_check_coverage.py

Prints the table and writes benchmarks/results/self_check_coverage.md.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from bcrxl_donors import markdown

from sc_neuronedit._self_check_choice import INTERVAL_LEVEL

HERE = Path(__file__).parent
NOISE = 0.01


def summarise(groups: pd.DataFrame) -> dict:
    above, below = groups.real_skill > groups.high, groups.real_skill < groups.low
    worse = groups.energy > groups.default_energy + NOISE
    return {"groups": len(groups), "covered": int(groups.covered.sum()),
            "coverage": round(float(groups.covered.mean()), 3), "real above": int(above.sum()),
            "real below": int(below.sum()), "vouched": int(groups.vouched.sum()),
            "vouched, real skill <= 0": int((groups.vouched & (groups.real_skill <= 0)).sum()),
            "auto energy": round(float(groups.energy.mean()), 4),
            "default energy": round(float(groups.default_energy.mean()), 4),
            f"auto worse by > {NOISE}": int(worse.sum())}


def main():
    files = sorted((HERE / "results").glob("self_check_*.groups.csv"))
    frames = {f.name.removesuffix(".groups.csv"): pd.read_csv(f) for f in files}
    rows = [{"results": name, **summarise(g)} for name, g in frames.items()]
    rows.append({"results": "all", **summarise(pd.concat(frames.values()))})
    table = pd.DataFrame(rows)
    detail = pd.concat([g.assign(results=name) for name, g in frames.items()])[
        ["results", "seed", "group", "chosen", "expected_skill", "low", "high", "real_skill",
         "covered", "vouched"]].round(3)
    text = "\n".join([
        "# Self-check: interval coverage and auto against the default", "",
        "`python benchmarks/self_check_coverage.py` — pooled over the per-group tables of "
        "`self_check.py` (`benchmarks/results/self_check_*.groups.csv`). Nominal coverage of "
        f"the reported skill interval: {INTERVAL_LEVEL:.0%} (a t prediction interval for one more "
        "group). 'real above': the held-out skill was higher than the interval (the check was "
        "pessimistic); 'real below': lower (optimistic). Energy: the held-out energy distance "
        "of auto's prediction and of the default call's, mean over groups.", "",
        markdown(table), "", "## Each held-out group", "", markdown(detail), ""])
    out = HERE / "results" / "self_check_coverage.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
