"""Out-of-core: one training epoch on a 1,000,000 x 2,000 backed .h5ad, with peak RSS.

The file (CSR, 92 % zeros, log1p values; the generator of ``throughput.py``,
10 blocks of 100,000 cells with seeds 0-9) is written by a child process, so its
memory does not count; this process opens it with ``anndata.read_h5ad(backed="r")``,
trains the default model for one epoch (no validation split) reading shuffled
chunks of rows, then predicts 100,000 cells from the file. Peak RSS is this
process's high-water mark.

    python benchmarks/backed_epoch.py                       # writes /tmp/sne_backed_1m.h5ad once
    python benchmarks/backed_epoch.py --n-cells 200000      # quicker

Prints a table and writes benchmarks/results/backed_epoch.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BLOCK = 100_000


def generate(path: Path, n_cells: int) -> None:
    import anndata as ad
    from scipy import sparse
    from throughput import generated_counts

    blocks = [generated_counts(min(BLOCK, n_cells - s), 2000, 0.08, seed=i)
              for i, s in enumerate(range(0, n_cells, BLOCK))]
    X = sparse.vstack(blocks, format="csr")
    del blocks
    ad.AnnData(X).write_h5ad(path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-cells", type=int, default=1_000_000)
    p.add_argument("--path", default=None, help="default /tmp/sne_backed_<n>.h5ad")
    p.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "backed_epoch.md"))
    args = p.parse_args()
    path = Path(args.path or f"/tmp/sne_backed_{args.n_cells // 1000}k.h5ad")
    if args.generate_only:
        return generate(path, args.n_cells)
    if not path.exists():
        print(f"writing {path} in a child process ...", flush=True)
        subprocess.run([sys.executable, __file__, "--n-cells", str(args.n_cells), "--path", str(path),
                        "--generate-only"], check=True, cwd=Path(__file__).parent)

    import resource

    import anndata as ad

    import sc_neuronedit as sne

    adata = ad.read_h5ad(path, backed="r")
    n, m = adata.shape
    start = time.perf_counter()
    model = sne.NeuronEditor(adata).train(max_epochs=1, validation_fraction=0.0, patience=None,
                                          random_state=0, progress=True, device="cpu")
    train_s = time.perf_counter() - start  # includes the standardisation pass over the file
    k = min(20_000, n // 4)
    edit = model.learn_edit(np.arange(0, k), np.arange(k, 2 * k))
    start = time.perf_counter()
    pred = model.apply_edit(np.arange(max(0, n - BLOCK), n), edit, decode="plain")
    predict_s = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    cli = "" if args.n_cells == 1_000_000 else f" --n-cells {args.n_cells}"
    lines = [
        "# One epoch from a backed file", "",
        f"`python benchmarks/backed_epoch.py{cli}`: "
        f"{n:,} x {m:,} CSR ({path.stat().st_size / 2**30:.2f} GiB on disk), opened with "
        "`backed=\"r\"`; default model, batch 128, 2 torch threads, CPU.", "",
        f"| cells | train 1 epoch (s) | train cells/s | predict {len(pred):,} cells, plain decode (s) "
        "| output MB | peak RSS (GiB) |",
        "|---|---|---|---|---|---|",
        f"| {n:,} | {train_s:.0f} | {n / train_s:,.0f} | {predict_s:.1f} | {pred.nbytes / 1e6:.0f} "
        f"| {rss:.2f} |",
        "",
        "Training time includes the standardisation pass over the file. The peak includes the "
        f"{len(pred):,} x {m:,} float32 prediction the benchmark asks for.",
    ]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    adata.file.close()


if __name__ == "__main__":
    main()
