"""Time one ``sne.tl.synergy`` call: 4 x 1,000 semi-synthetic cells, 30 resamples.

The autoencoder is trained once beforehand (``model=``), so the time is that of the
synergy call itself: both routes, 30 reruns of the pipeline, the tables.

    SC_NEURONEDIT_DATA_DIR=/work/shared/data python benchmarks/synergy_speed.py --repeats 3
    ... --population-key population   # within populations (the data's B / T / other gate)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import sc_neuronedit as sne


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n-resamples", type=int, default=30)
    p.add_argument("--population-key", default=None)
    args = p.parse_args()
    adata = sne.datasets.bcrxl_combination(gamma=1.0, n_cells=1000)
    model = sne.NeuronEditor(adata).train(cells=adata.obs["condition"] != "A+B", device="cpu",
                                          progress=False)
    kwargs = dict(control="control", combinations={"A+B": ("A", "B")}, model=model,
                  n_resamples=args.n_resamples, device="cpu", progress=False)
    if args.population_key:
        kwargs["population_key"] = args.population_key
    seconds, cpu = [], []
    for r in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        sne.tl.synergy(adata, "condition", random_state=r, key_added=f"s{r}", **kwargs)
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    # CPU time beside wall time: on a shared machine the wall time says more about the load
    print(f"population_key={args.population_key}: wall {np.median(seconds):.2f} s, CPU "
          f"{np.median(cpu):.2f} s (medians of {args.repeats}; wall "
          f"{', '.join(f'{s:.2f}' for s in seconds)})")


if __name__ == "__main__":
    main()
