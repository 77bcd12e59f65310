"""The self-check's choice at another switch level, from the check tables that
``self_check.py`` keeps (``benchmarks/results/self_check_*.tables.csv``): no model is run.

For each held-out group: the best alternative's paired t against the default and the
candidate chosen at ``--level`` (``--shared`` divides it among the alternatives, the
rule first tried), beside the one recorded by the run.

    python benchmarks/probe_switch_level.py --level 0.05 --shared self_check_bcrxl_kmeans10
    python benchmarks/probe_switch_level.py --level 0.10 self_check_bcrxl_kmeans10
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from scipy import stats

from sc_neuronedit import _self_check, _self_check_choice

HERE = Path(__file__).parent


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", help="result stems, e.g. self_check_bcrxl_kmeans10")
    p.add_argument("--level", type=float, default=_self_check_choice.SWITCH_LEVEL)
    p.add_argument("--shared", action="store_true", help="divide the level among the alternatives")
    args = p.parse_args()
    rows = []
    for stem in args.results:
        tables = pd.read_csv(HERE / "results" / f"{stem}.tables.csv")
        tables["population"] = tables["population"].astype(str)
        recorded = pd.read_csv(HERE / "results" / f"{stem}.groups.csv")
        for (seed, held), table in tables.groupby(["seed", "held_out"], sort=False):
            default = _self_check_choice.default_candidate("bottleneck", (table.population != "all").any())
            per_group = _self_check.group_skill(table)
            wide = per_group.pivot(index="group", columns="candidate", values="skill")
            paired = _self_check_choice.paired_t(wide.sub(wide[default], axis=0)).drop(default)
            level = args.level / (len(paired) if args.shared else 1)
            quantile = stats.t.ppf(1 - level, len(wide) - 1)
            better = paired[paired["t"] > quantile]
            best = paired["t"].idxmax()
            rows.append(dict(results=stem, seed=seed, group=held, best_alternative=best,
                             t=round(float(paired.loc[best, "t"]), 2), needs=round(quantile, 2),
                             chosen=better["mean"].idxmax() if len(better) else default,
                             recorded=recorded[(recorded.seed == seed)
                                               & (recorded.group == held)].chosen.item()))
    out = pd.DataFrame(rows)
    print(out.to_string(index=False))
    print(f"\nlevel {args.level:g}{' shared' if args.shared else ''}: the default kept in "
          f"{int((out.chosen.str.startswith('bottleneck')).sum())}/{len(out)} groups")


if __name__ == "__main__":
    main()
