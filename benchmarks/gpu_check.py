"""GPU check: train, edit and predict on CUDA, compare with the CPU, print timings.

For a machine with a GPU (never needed for CI or the tests):

    SC_NEURONEDIT_DATA_DIR=../shared/data python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --device cpu --epochs 2     # the same run on the CPU

Trains the default model on the Kang data (held-out CD14+Mono stimulated cells
left out) on ``--device`` and on the CPU with the same seed, learns the edit,
predicts, and prints seconds per epoch, prediction time, the r² of predicted vs
observed DEG means on both devices and the largest difference between the two
predictions (float32 kernels differ between devices, so they agree only
approximately). Also times a prediction of 50,000 generated cells, and training
with ``mixed_precision=True`` (bfloat16 autocast) on ``--device``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import sc_neuronedit as sne
from sc_neuronedit import metrics


def run(adata, device: str, epochs: int, mixed_precision: bool = False) -> dict:
    ct, cond = adata.obs["cell_type"].to_numpy(), adata.obs["condition"].to_numpy()
    held, real = (ct == "CD14+Mono") & (cond == "control"), (ct == "CD14+Mono") & (cond == "stimulated")
    model = sne.NeuronEditor(adata).train(cells=~real, max_epochs=epochs, patience=None, random_state=0,
                                          device=device, progress=False,
                                          mixed_precision=mixed_precision)
    others = ct != "CD14+Mono"
    edit = model.learn_edit(others & (cond == "control"), others & (cond == "stimulated"),
                            groupby="cell_type")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    pred = model.apply_edit(held, edit)
    predict_s = time.perf_counter() - start
    degs = adata.var_names.get_indexer(metrics.top_degs(adata[ct == "CD14+Mono"], "condition",
                                                         "stimulated", "control"))
    return {"model": model, "edit": edit, "pred": pred, "epoch_s": model.history.seconds / epochs,
            "predict_s": predict_s, "r2_deg": metrics.r2_means(pred, adata.X[real], degs)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--epochs", type=int, default=20)
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("No CUDA device here; run on a GPU machine, or pass --device cpu.")
    adata = sne.datasets.kang()
    print(f"torch {torch.__version__}; device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    results = {d: run(adata, d, args.epochs) for d in dict.fromkeys([args.device, "cpu"])}
    for d, r in results.items():
        print(f"{d:8s} {r['epoch_s']:.3f} s/epoch ({adata.n_obs / r['epoch_s']:,.0f} cells/s), "
              f"predict {r['predict_s']:.3f} s, r2 DEG means {r['r2_deg']:.3f}")
    if len(results) == 2:
        a, b = (r["pred"] for r in results.values())
        print(f"largest |prediction difference| {args.device} vs cpu: {np.abs(a - b).max():.2e}")
    mixed = run(adata, args.device, args.epochs, mixed_precision=True)
    print(f"{args.device} mixed precision: {mixed['epoch_s']:.3f} s/epoch "
          f"({adata.n_obs / mixed['epoch_s']:,.0f} cells/s), r2 DEG means {mixed['r2_deg']:.3f}")
    cells = np.random.default_rng(0).normal(size=(50_000, adata.n_vars)).astype(np.float32)
    model, edit = results[args.device]["model"], results[args.device]["edit"]
    start = time.perf_counter()
    model.apply_edit(cells, edit, decode="plain")
    print(f"predict 50,000 x {adata.n_vars:,} dense cells (plain decode) on {args.device}: "
          f"{time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
