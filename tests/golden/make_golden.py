"""Write the golden outputs of today's code: ``<case>.npz``, the two saved models and
``manifest.json``, all next to this file.

Usage (from the repository root)::

    SC_NEURONEDIT_DATA_DIR=../shared/data python tests/golden/make_golden.py [case ...]

With case names only those cases are rewritten (the manifest keeps the others);
``--models`` also retrains and re-saves the two models, whose outputs then change
with them. Regenerate only for an intended change of behaviour, and say so in the
commit: the point of these files is that a refactoring leaves them as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # ``golden.cases``, as tests/test_golden.py imports it

import numpy as np
import scipy
import torch
from golden import cases

SHARED = HERE.parents[2] / "shared" / "data"


def save_models() -> None:
    """Train and save the two models, and check that loading one gives the outputs of
    the model that was saved (the weights round-trip exactly)."""
    for make, folder, version in ((cases.format1_model, cases.MODEL_FORMAT1, 1),
                                  (cases.format2_model, cases.MODEL_FORMAT2, 2)):
        with cases.one_thread():
            model = make()
            model.save(folder, overwrite=True)
            trained = cases.model_outputs(model)
        assert cases.saved_format(folder) == version, (folder, cases.saved_format(folder))
        loaded = cases.run_case(folder.name, HERE)
        assert sorted(loaded) == sorted(trained)
        for key, value in trained.items():
            assert np.array_equal(value, loaded[key], equal_nan=value.dtype.kind in "fc"), key


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help=f"cases to rewrite (default all): {', '.join(cases.CASES)}")
    parser.add_argument("--models", action="store_true", help="retrain and re-save the two models")
    args = parser.parse_args(argv)
    os.environ.setdefault("SC_NEURONEDIT_DATA_DIR", str(SHARED))  # as tests/conftest.py does
    names = args.cases or list(cases.CASES)
    unknown = [n for n in names if n not in cases.CASES]
    if unknown:
        parser.error(f"unknown cases: {unknown}")
    missing = [n for n in names if n in cases.NEEDS_DATA
               and not (cases.sne.datasets.data_dir() / cases.NEEDS_DATA[n]).is_file()]
    if missing:
        parser.error(f"{missing} need {cases.sne.datasets.data_dir()}; set SC_NEURONEDIT_DATA_DIR")
    if args.models or not (cases.MODEL_FORMAT1 / "config.json").is_file():
        save_models()

    manifest_path = HERE / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"cases": {}}
    here_now = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if set(names) != set(cases.CASES) and any(manifest.get(k, v) != v for k, v in here_now.items()):
        # One manifest describes every file: mixing machines would make it lie about some.
        parser.error(f"the manifest was written with {({k: manifest[k] for k in here_now})}, this is "
                     f"{here_now}: regenerate every case, not some")
    threads = torch.get_num_threads()
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            result = cases.run_case(name, Path(tmp))
        np.savez_compressed(HERE / f"{name}.npz", **result)
        manifest["cases"][name] = {
            "file": f"{name}.npz", "n_arrays": len(result),
            "description": " ".join(cases.CASES[name].__doc__.split("\n\n")[0].split()),
        }
        print(f"{name}: {len(result)} arrays", flush=True)
    assert torch.get_num_threads() == threads, "run_case must restore torch's thread count"
    manifest.update({
        **here_now,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "torch_threads": 1,
        "cases": dict(sorted(manifest["cases"].items())),
    })
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
