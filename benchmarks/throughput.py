"""Throughput on this machine: how close training and prediction come to the matmul roofline.

In one run: the dense float32 matmul rate of torch (GFLOP/s, the roofline), the
autoencoder's FLOPs per cell for a training step and for a prediction, and the
achieved cells/s, on (1) the Kang matrix (1,975 cells x 6,998 genes, CSR) and (2)
a generated CSR matrix of 100,000 cells x 2,000 genes with single-cell-like
sparsity (92 % zeros, log1p values). Prediction = edit + decode of every cell
(``decode="edited_residual"``: one encoder and two decoder passes), without
autograd. Peak RSS is the process's high-water mark (``ru_maxrss``).

    SC_NEURONEDIT_DATA_DIR=/work/shared/data python benchmarks/throughput.py
    python benchmarks/throughput.py --repeats 1 --n-cells 20000          # quicker
    python benchmarks/throughput.py --scgen-python .venv-scgen/bin/python  # and scGen epochs
                                                       # (bash benchmarks/envs/scgen.sh)

FLOPs count the linear layers only (2 x in x out per cell and layer), with the
first layer dense; a training step is 3 forward passes' worth (forward, and
backward for inputs and weights). On the CPU a sparse input enters the first
layer through its non-zeros only, so prediction does fewer FLOPs than counted
and can exceed 100 % of the roofline.
A last, untimed prediction of the generated matrix runs under torch.profiler:
its table splits the time into the stages that ``sc_neuronedit._predict`` labels
(the profiler itself adds a little to each).
Prints the tables and writes benchmarks/results/throughput.md.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch
from scipy import sparse

import sc_neuronedit as sne


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Float32 GEMM rate of torch on this machine (best of ``repeats``)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up: thread pool, caches
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _seconds(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def layer_flops(widths) -> list[int]:
    return [2 * a * b for a, b in zip(widths[:-1], widths[1:])]


def model_flops(model) -> tuple[float, float, float]:
    """FLOPs per cell of one training step, of a default prediction (one encoder and
    two decoder passes) and of a ``decode="plain"`` one (one of each)."""
    net = model.network
    widths = [net.n_input, *net.hidden, net.n_latent, *reversed(net.hidden), net.n_input]
    flops = layer_flops(widths)
    half = len(flops) // 2
    encoder, decoder = sum(flops[:half]), sum(flops[half:])
    return 3.0 * (encoder + decoder), encoder + 2.0 * decoder, encoder + decoder


def generated_counts(n_cells: int, n_genes: int, density: float, seed: int = 0) -> sparse.csr_matrix:
    """CSR log1p values with ``1 - density`` zeros: gene means spread over 3 decades."""
    rng = np.random.default_rng(seed)
    nnz_per_row = rng.binomial(n_genes, density, size=n_cells)
    indptr = np.concatenate([[0], np.cumsum(nnz_per_row)])
    popularity = rng.gamma(0.6, size=n_genes)
    popularity /= popularity.sum()
    indices = np.concatenate([np.sort(rng.choice(n_genes, k, replace=False, p=popularity))
                              for k in nnz_per_row])
    values = np.log1p(rng.geometric(0.4, size=indptr[-1])).astype(np.float32)
    return sparse.csr_matrix((values, indices, indptr), shape=(n_cells, n_genes))


def nbytes(X) -> int:
    if sparse.issparse(X):
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return np.asarray(X).nbytes


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def scgen_epochs(python: str, kang, epochs: int) -> dict:
    """scGen's training time on Kang, in its own environment (scgen_compare.py)."""
    import tempfile

    from scgen_compare import export_kang, run_scgen

    with tempfile.TemporaryDirectory() as tmp:
        export_kang(kang, Path(tmp) / "kang.h5ad")
        timing, _ = run_scgen(python, Path(tmp) / "kang.h5ad", "CD4T", Path(tmp) / "out",
                              max_epochs=epochs, seed=0)
    return timing


def stage_profile(model, edit, n: int) -> dict[str, float]:
    """Seconds per labelled stage of one default prediction of ``n`` cells."""
    from torch import profiler

    with profiler.profile(activities=[profiler.ProfilerActivity.CPU]) as prof:
        model.apply_edit(np.arange(n), edit)
    stages = {e.key.removeprefix("sne: "): e.cpu_time_total / 1e6
              for e in prof.key_averages() if e.key.startswith("sne: ")}
    return dict(sorted(stages.items(), key=lambda kv: -kv[1]))


def measure(name: str, X, *, train_cells: int, epochs: int, repeats: int, gflops: float):
    """Median training and prediction rates of the default model on ``X``, with the
    last model trained and its edit."""
    n = X.shape[0]
    train_idx = np.arange(min(train_cells, n))
    train_rates = []
    for r in range(repeats):
        model = sne.NeuronEditor(X).train(
            cells=train_idx, max_epochs=epochs, validation_fraction=0.0, patience=None,
            random_state=r, progress=False, device="cpu")
        train_rates.append(len(train_idx) * epochs / model.history.seconds)
    half = len(train_idx) // 2
    edit = model.learn_edit(train_idx[:half], train_idx[half:])
    # The pooled residual edit (one level bin), timed in the same run: the cost of the bins.
    pooled = model.learn_edit(train_idx[:half], train_idx[half:], residual_bins=1)
    seconds = {}
    for form, e in (("edited_residual", edit), ("plain", edit), ("pooled", pooled)):
        for _ in range(repeats):
            start = time.perf_counter()
            out = model.apply_edit(np.arange(n), e, decode="edited_residual" if form == "pooled" else form)
            seconds.setdefault(form, []).append(time.perf_counter() - start)
            del out
    train_flops, predict_flops, plain_flops = model_flops(model)
    train_rate, predict_s = float(np.median(train_rates)), float(np.median(seconds["edited_residual"]))
    plain_s = float(np.median(seconds["plain"]))
    row = {
        "data": name, "cells": n, "genes": X.shape[1], "input MB": nbytes(X) / 1e6,
        "train cells/s": train_rate, "train GFLOP/s": train_rate * train_flops / 1e9,
        "train % roofline": 100 * train_rate * train_flops / 1e9 / gflops,
        "predict s (all cells)": predict_s, "predict cells/s": n / predict_s,
        "predict % roofline": 100 * n / predict_s * predict_flops / 1e9 / gflops,
        "predict s, residual_bins=1": float(np.median(seconds["pooled"])),
        "predict s, plain decode": plain_s,
        "plain % roofline": 100 * n / plain_s * plain_flops / 1e9 / gflops,
        "MFLOP/cell train": train_flops / 1e6, "MFLOP/cell predict": predict_flops / 1e6,
    }
    return row, (model, edit)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement; medians reported")
    p.add_argument("--n-cells", type=int, default=100_000, help="cells of the generated matrix")
    p.add_argument("--epochs", type=int, default=2, help="training epochs per timed run")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "throughput.md"))
    p.add_argument("--scgen-python", default=None,
                   help="python of the separate scGen environment (benchmarks/envs/"
                        "scgen-requirements.txt): also time scGen's training on Kang")
    args = p.parse_args()

    gflops = matmul_gflops()
    print(f"matmul roofline: {gflops:.1f} GFLOP/s float32 ({torch.get_num_threads()} threads)", flush=True)
    kang = sne.datasets.kang()
    rows = [measure("Kang (CSR)", sparse.csr_matrix(kang.X), train_cells=kang.n_obs,
                    epochs=args.epochs, repeats=args.repeats, gflops=gflops)[0]]
    print(rows[-1], flush=True)
    generated = generated_counts(args.n_cells, 2000, 0.08)
    row, trained = measure(f"generated {args.n_cells:,} x 2,000 (CSR, 92 % zeros)", generated,
                           train_cells=20_000, epochs=args.epochs, repeats=args.repeats, gflops=gflops)
    rows.append(row)
    print(rows[-1], flush=True)
    stages = stage_profile(*trained, generated.shape[0])
    print(stages, flush=True)
    scgen = None if args.scgen_python is None else scgen_epochs(args.scgen_python, kang, args.epochs)

    cols = list(rows[0])
    fmt = lambda v: f"{v:,.1f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
    lines = [
        "# Throughput", "",
        f"`python benchmarks/throughput.py{'' if args.repeats == 3 else f' --repeats {args.repeats}'}"
        f"{'' if args.n_cells == 100_000 else f' --n-cells {args.n_cells}'}"
        f"{'' if args.epochs == 2 else f' --epochs {args.epochs}'}"
        f"{'' if args.scgen_python is None else ' --scgen-python <venv>/bin/python'}` on "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, CPU.",
        f"Roofline (torch float32 2048² matmul, best of 10): **{gflops:.1f} GFLOP/s**. Default model "
        "(hidden 512, 256, latent 64), batch 128, Adam; training timed over "
        f"{args.epochs} epochs without validation (first 20,000 cells of the generated matrix); "
        "prediction = `apply_edit` of every cell with the default `decode=\"edited_residual\"` (the "
        "decoder twice and a per-gene quantile edit of the residual in 10 level bins), the same with "
        "the pooled residual edit (`residual_bins=1`), and with `decode=\"plain\"`. "
        f"Medians of {args.repeats} runs. FLOPs are counted with a dense first layer; prediction "
        "feeds sparse input to it through its non-zeros only (the generated matrix is 8 % non-zeros), "
        "so it can pass 100 %.",
        f"Peak RSS of the whole run: {peak_rss_gib():.2f} GiB.", "",
        (f"scGen {scgen['scgen']} (separate environment, its defaults, batch 32) on the same Kang "
         f"data without stimulated CD4T ({scgen['train_cells']:,} cells): "
         f"{scgen['seconds'] / scgen['epochs']:.1f} s "
         f"per epoch = {scgen['train_cells'] * scgen['epochs'] / scgen['seconds']:,.0f} cells/s, "
         f"over {scgen['epochs']} epochs." if scgen else
         "scGen not timed in this run (pass `--scgen-python`; see benchmarks/envs/scgen-requirements.txt)."),
        "",
        "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
        *("| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows),
        "", "## Where a default prediction of the generated matrix spends its time", "",
        "One more prediction under torch.profiler (which slows it a little), split into the "
        "stages `sc_neuronedit/_predict.py` labels. *output layer* is the two products with "
        "the decoder's last layer (the bulk of the FLOPs); *residual edit* the compiled per-gene "
        "edit; *write* the transposition into the output, including first touches of its pages.",
        "", "| stage | seconds |", "|---|---|",
        *(f"| {k} | {v:.2f} |" for k, v in stages.items()),
        f"| total | {sum(stages.values()):.2f} |",
    ]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
