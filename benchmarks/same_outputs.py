"""Two versions of the package on real data: do they give the same bits, and in what time?

A refactoring must leave outputs as they were. ``tests/test_golden.py`` holds that on
small fixed inputs; this script holds it on the shared data sets at full defaults:

- Kang: ``tl.predict_perturbation`` of CD14+ monocytes (the layer and ``outside_fraction``);
- Gates: ``tl.batch_correct`` with its default ``edit_layer="auto"`` (the layer and the
  self-check's skills), timed whole (training included);
- BCR-XL: ``tl.synergy`` within populations, 10 reruns (every test's estimate, se, p, q);
- Kang on disk: ``tl.predict_perturbation`` on a backed ``.h5ad`` with a given model,
  timed without the training (learning, prediction and statistics: where rows are read).

Run it once per version (one torch thread, so that bits are comparable), the version
chosen by ``PYTHONPATH``, then compare::

    git worktree add /tmp/old e19ca35
    PYTHONPATH=/tmp/old python benchmarks/same_outputs.py run --out /tmp/old.npz
    python benchmarks/same_outputs.py run --out /tmp/new.npz
    python benchmarks/same_outputs.py report /tmp/old.npz /tmp/new.npz --labels e19ca35 HEAD

``report`` prints a table and writes benchmarks/results/same_outputs.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import torch

#: Timed runs of the backed prediction (the first reads the file cold).
BACKED_RUNS = 3


def _dense(M) -> np.ndarray:
    return M.toarray() if hasattr(M, "toarray") else np.asarray(M)


def run(out: str) -> None:
    torch.set_num_threads(1)
    import sc_neuronedit as sne

    warnings.simplefilter("ignore")
    res = {"version/path": np.asarray(str(Path(sne.__file__).parent))}
    kang = sne.datasets.kang()
    sne.tl.predict_perturbation(kang, "condition", control="control", perturbed="stimulated",
                                groupby="cell_type", predict_for="CD14+Mono", random_state=0,
                                progress=False)
    edited = kang.obs["predicted_perturbation_edited"].to_numpy()
    res["kang/layer"] = _dense(kang.layers["predicted_perturbation"][edited])
    res["kang/outside_fraction"] = kang.uns["predicted_perturbation"]["edit"]["outside_fraction"]

    cytof = sne.datasets.cytonorm_gates()
    sne.pp.arcsinh(cytof, 5)
    marker = cytof.var["marker"].astype(str)
    technical = marker.str.match("^BC[0-9]$") | marker.isin(["DNA1", "DNA2", "beadDist"])
    cytof.var["marker_channel"] = (marker != "") & ~technical
    start = time.perf_counter()
    sne.tl.batch_correct(cytof, "batch", reference_key="reference", reference_value=True,
                         layer="arcsinh", mask_var="marker_channel", random_state=0, progress=False)
    res["seconds/gates batch_correct"] = np.asarray([time.perf_counter() - start])
    res["gates/layer"] = _dense(cytof.layers["batch_corrected"])
    res["gates/self_check skill"] = cytof.uns["batch_corrected"]["self_check"]["skill"].to_numpy()

    combo = sne.datasets.bcrxl_combination(gamma=1.0)
    sne.tl.synergy(combo, "condition", control="control", combinations={"A+B": ("A", "B")},
                   population_key="population", n_resamples=10, random_state=0, progress=False)
    for column in ("estimate", "se", "pvalue", "qvalue"):
        res[f"synergy/{column}"] = combo.uns["synergy"]["tests"][column].to_numpy(dtype=float)

    with tempfile.TemporaryDirectory() as tmp:
        kang.write_h5ad(Path(tmp) / "kang.h5ad")
        backed = ad.read_h5ad(Path(tmp) / "kang.h5ad", backed="r")
        held = ((backed.obs["cell_type"] == "CD14+Mono")
                & (backed.obs["condition"] == "stimulated")).to_numpy()
        model = sne.NeuronEditor(backed, hidden=(64,), n_latent=16).train(
            cells=~held, max_epochs=1, progress=False)
        seconds = []
        for _ in range(BACKED_RUNS):
            start = time.perf_counter()
            pred = sne.tl.predict_perturbation(
                backed, "condition", control="control", perturbed="stimulated",
                groupby="cell_type", predict_for="CD14+Mono", model=model, inplace=False)
            seconds.append(time.perf_counter() - start)
        res["seconds/backed kang predict (given model)"] = np.asarray(seconds)
        res["backed/layer"] = _dense(pred.X)
    np.savez(out, **res)
    print(f"wrote {out}")


def report(old: str, new: str, out: str, labels=None) -> str:
    a, b = np.load(old), np.load(new)
    names = labels or [str(v["version/path"]) for v in (a, b)]
    lines = ["# Same outputs: two versions of the package on real data", "",
             f"`python benchmarks/same_outputs.py report {old} {new}"
             + ("" if labels is None else " --labels " + " ".join(f"'{x}'" for x in labels))
             + "` (see the script's "
             f"docstring for the two `run` commands). Old: {names[0]}, new: {names[1]}; "
             "one torch thread; the two runs shared the machine, so timings are rough.", "",
             "| output | shape | identical bits |", "|---|---|---|"]
    outputs = [k for k in a.files if "/" in k and not k.startswith(("seconds/", "version/"))]
    for key in outputs:
        same = np.array_equal(a[key], b[key], equal_nan=True)
        lines.append(f"| {key} | {a[key].shape} | {'yes' if same else '**no**'} |")
    lines += ["", "| timing (s) | old | new |", "|---|---|---|"]
    for key in (k for k in a.files if k.startswith("seconds/")):
        lines.append(f"| {key.split('/', 1)[1]} | "
                     + " | ".join(", ".join(f"{s:.2f}" for s in v[key]) for v in (a, b)) + " |")
    text = "\n".join(lines) + "\n"
    Path(out).write_text(text)
    print(text)
    return text


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="outputs and timings of the package on PYTHONPATH")
    r.add_argument("--out", required=True)
    c = sub.add_parser("report", help="compare two runs")
    c.add_argument("old")
    c.add_argument("new")
    c.add_argument("--out", default=str(Path(__file__).parent / "results" / "same_outputs.md"))
    c.add_argument("--labels", nargs=2, metavar=("OLD", "NEW"),
                   help="names of the two versions in the report (default: their paths)")
    args = p.parse_args()
    if args.command == "run":
        run(args.out)
    else:
        report(args.old, args.new, args.out, args.labels)


if __name__ == "__main__":
    main()
