"""The residual edit read from a table (BinnedInterp) against the per-value search.

On the Kang matrix and on the generated 2,000-gene matrix of ``throughput.py``: train
the default model for 2 epochs, learn an edit between two halves of the cells, and
on the residuals of up to 4,096 cells time building the table, reading it, and
``QuantileEdit.shift`` (a ``searchsorted`` per value); report the share of values
that fall in bins with several knots (searched exactly), the largest difference
between the two, and the number of cells from which the table pays for its build.
This is what ``sc_neuronedit._model.BINNED_MIN_CELLS`` rests on.

    SC_NEURONEDIT_DATA_DIR=/work/shared/data python benchmarks/binned_residual.py

Prints a table and writes benchmarks/results/binned_residual.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy import sparse
from throughput import generated_counts

import sc_neuronedit as sne
from sc_neuronedit._edit import BinnedInterp
from sc_neuronedit._model import BINNED_MIN_CELLS


def median_seconds(func, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(name, X, repeats):
    n = min(X.shape[0], 20_000)
    idx = np.arange(n)
    model = sne.NeuronEditor(X).train(cells=idx, max_epochs=2, validation_fraction=0.0,
                                      patience=None, random_state=0, progress=False, device="cpu")
    edit = model.learn_edit(idx[: n // 2], idx[n // 2 :])
    residual = edit.residual
    src, shift = residual.source_knots, residual.target_knots - residual.source_knots
    cells = idx[: min(n, 4096)]
    net = model.network
    with torch.no_grad():
        x = torch.as_tensor(X[cells].toarray() if sparse.issparse(X) else X[cells])
        r = x - net(x)
    build = median_seconds(lambda: BinnedInterp(src, shift), repeats)
    table = BinnedInterp(src, shift)
    read = median_seconds(lambda: table(r), repeats)
    search = median_seconds(lambda: residual.shift(r), repeats)
    # the share of values in bins with several knots (NaN marks them)
    rt = r.T.contiguous()
    b = ((rt - table.lo[:, None]) * table.scale[:, None]).floor().clamp(-1, table.n_bins - 1)
    b = (b + (rt >= table.hi[:, None])).long() + table.first_bin
    several = float(torch.isnan(table.kink_at[b]).float().mean())
    saved_per_cell = (search - read) / len(cells)
    return {
        "data": name, "genes": X.shape[1], "cells timed": len(cells),
        "build s": build, "table s": read, "search s": search,
        "speed-up": search / read, "values searched exactly": several,
        "max |table - search|": float((table(r) - residual.shift(r)).abs().max()),
        "break-even cells": build / saved_per_cell if saved_per_cell > 0 else float("inf"),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "binned_residual.md"))
    args = p.parse_args()
    kang = sne.datasets.kang()
    rows = [measure("Kang (CSR)", sparse.csr_matrix(kang.X), args.repeats),
            measure("generated (CSR, 92 % zeros)", generated_counts(20_000, 2000, 0.08), args.repeats)]
    cols = list(rows[0])
    fmt = lambda v: (f"{v:.2e}" if isinstance(v, float) and v < 1e-3 else f"{v:,.3f}"
                     if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
    text = "\n".join([
        "# Residual edit: table against search", "",
        "`python benchmarks/binned_residual.py` on the CPU, "
        f"{torch.get_num_threads()} torch threads; medians of {args.repeats}. Default model "
        "trained 2 epochs; edit between two halves of the first 20,000 cells; timed on the "
        f"residuals of the first 4,096 (Kang: all {kang.n_obs:,}). `BINNED_MIN_CELLS` = "
        f"{BINNED_MIN_CELLS:,}.", "",
        "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
        *("| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows),
    ]) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
