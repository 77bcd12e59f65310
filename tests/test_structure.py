"""The package's structure, held against the code: layers, sizes, reads and warnings.

``docs/development.md`` draws the layers: data edge (``_anndata``) -> facade
(``NeuronEditor``) -> array engines; ``tl``/``pl``/``pp``/CLI above. These tests fail
when a change climbs back up a layer, grows a module past a page, reads a backed
matrix's rows twice or points a warning at the package instead of the user.
"""

import ast
import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import sc_neuronedit as sne
from sc_neuronedit import _anndata, _applying
from sc_neuronedit.nn import _training

PACKAGE = Path(sne.__file__).parent
#: Modules that take arrays, rows and a network: none may reach AnnData, the data edge,
#: the facade or the tl functions, directly or through another package module.
ENGINES = ("_passes", "_learning", "_applying", "_fitting", "_edit", "_residual", "_predict",
           "_kernels", "_matrix", "_synergy", "_self_check", "_self_check_choice",
           "_self_check_batches", "_threads", "_warn", "nn")
FORBIDDEN = {"anndata", "sc_neuronedit._anndata", "sc_neuronedit._model", "sc_neuronedit.tl",
             "scanpy"}
MAX_LINES = 600


def _module_file(name: str) -> Path:
    path = PACKAGE.joinpath(*name.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports(name: str) -> set[str]:
    """Absolute names of what module ``name`` imports (relative imports resolved)."""
    path = _module_file(name)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            mod = node.module if node.level == 0 else ".".join(filter(None, [base, node.module]))
            out.add(mod)
            # ``from . import _x`` imports a module, not a name
            out.update(f"{mod}.{a.name}" for a in node.names
                       if _module_file(f"{mod}.{a.name}").exists() and mod.startswith("sc_neuronedit"))
    return out


def _reaches(name: str, seen: set[str]) -> set[str]:
    """Everything ``name`` imports, following the package's own modules."""
    found = set()
    for mod in _imports(name):
        found.add(mod)
        if mod.startswith("sc_neuronedit") and mod not in seen and _module_file(mod).exists():
            seen.add(mod)
            found |= _reaches(mod, seen)
    return found


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_import_no_anndata_edge_facade_or_tl(engine):
    reached = _reaches(f"sc_neuronedit.{engine}", set())
    bad = sorted(m for m in reached if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not bad, f"{engine} reaches {bad}"


def test_the_layer_test_sees_a_climb():
    """The facade does import the data edge: the walk must find it (no test that cannot fail)."""
    assert "sc_neuronedit._anndata" in _reaches("sc_neuronedit._model", set())


def test_no_module_longer_than_a_page():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_facade_methods_resolve_call_return():
    """Each NeuronEditor method: resolve the inputs, call one engine, return (a few lines)."""
    long = {}
    for name, fn in vars(sne.NeuronEditor).items():
        fn = getattr(fn, "__func__", fn)
        if not inspect.isfunction(fn) or name == "__init__":
            continue
        body = ast.parse(inspect.cleandoc("\n" + inspect.getsource(fn))).body[0].body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        lines = body[-1].end_lineno - body[0].lineno + 1 if body else 0
        if lines > 16:
            long[name] = lines
    assert not long, long


@pytest.fixture
def backed_perturbation(tmp_path):
    """A backed AnnData of three cell types x two conditions and a model trained on it."""
    rng = np.random.default_rng(0)
    n = 2400  # the held-out type's control cells span two blocks of 1024
    types = np.repeat(["A", "B", "C"], n // 3)
    stim = np.tile([False, True], n // 2)
    X = rng.normal(size=(n, 10)).astype(np.float32) + 3
    X[stim, :3] += 1.5
    obs = pd.DataFrame({"cell_type": types, "condition": np.where(stim, "stim", "ctrl")},
                       index=[f"c{i}" for i in range(n)])
    ad.AnnData(X, obs=obs).write_h5ad(tmp_path / "cells.h5ad")
    adata = ad.read_h5ad(tmp_path / "cells.h5ad", backed="r")
    model = sne.NeuronEditor(adata, hidden=(16,), n_latent=4).train(
        cells=~((types == "C") & stim), max_epochs=1, progress=False)
    return adata, model, types, stim


def test_predict_perturbation_resolves_once_and_reads_each_row_once(backed_perturbation,
                                                                    monkeypatch):
    adata, model, types, stim = backed_perturbation
    resolved, reads = [], []
    original_resolve, original_read = _anndata.resolve_selection, _applying.read_rows

    def resolve(adata, selection, *, name="selection"):
        resolved.append(name)
        return original_resolve(adata, selection, name=name)

    def read(X, idx):
        reads.append(np.asarray(idx).copy())
        return original_read(X, idx)

    monkeypatch.setattr(_anndata, "resolve_selection", resolve)
    for module in (_applying, _training):
        monkeypatch.setattr(module, "read_rows", read)
    out = sne.tl.predict_perturbation(adata, "condition", control="ctrl", perturbed="stim",
                                      groupby="cell_type", predict_for="C", model=model,
                                      inplace=False)
    assert sorted(resolved) == ["control", "perturbed", "predict_for"]
    assert max(len(r) for r in reads) <= 1024
    edited = np.flatnonzero((types == "C") & ~stim)  # only ever read to be edited
    counts = np.bincount(np.concatenate(reads), minlength=len(types))
    assert (counts[edited] == 1).all(), np.unique(counts[edited])
    assert out.n_obs == len(edited)


def test_thread_counts_as_found_after_binned_learn_and_apply():
    """In a fresh process, where numba's thread pool starts inside the residual kernels."""
    code = """
import numpy as np, torch
torch.set_num_threads(1)
import sc_neuronedit as sne
X = np.random.default_rng(0).normal(size=(400, 12)).astype("float32")
t = np.arange(400) >= 200
m = sne.NeuronEditor(X, hidden=(16,), n_latent=4).train(max_epochs=1, progress=False, device="cpu")
import numba
before = numba.get_num_threads()
torch.set_num_threads(1)
edit = m.learn_edit(~t, t, residual_bins=4)
assert edit.residual.n_bins == 4
print(torch.get_num_threads(), numba.get_num_threads() == before)
m.apply_edit(~t, edit)
print(torch.get_num_threads(), numba.get_num_threads() == before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "True", "1", "True"]


def _caught(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [w for w in caught if issubclass(w.category, UserWarning | FutureWarning)]


def test_model_warnings_point_at_the_callers_line(toy_adata):
    X = np.asarray(toy_adata.X)
    treated = (toy_adata.obs["condition"] == "treated").to_numpy()
    kind = toy_adata.obs["cell_type"].to_numpy().astype(str)
    model = sne.NeuronEditor(X, hidden=(16,), n_latent=4)
    caught = _caught(lambda: model.train(max_epochs=1, progress=False, mixed_precision=True,
                                         device="cpu"))
    assert caught and all(w.filename == __file__ for w in caught)
    few = np.where(np.arange(len(kind)) < 5, "rare", kind)
    caught = _caught(lambda: model.learn_edit(~treated, treated, populations=few))
    assert caught and all(w.filename == __file__ for w in caught), [w.filename for w in caught]
    edit = model.learn_edit(~treated, treated, populations=kind)
    unseen = np.where(kind == kind[0], "new", kind)
    caught = _caught(lambda: model.apply_edit(~treated, edit, populations=unseen))
    assert caught and all(w.filename == __file__ for w in caught)


def test_tl_warnings_point_at_the_callers_line(toy_adata):
    kwargs = dict(apply_to={"condition": "control", "cell_type": "C"}, groupby="cell_type",
                  max_epochs=1, progress=False)
    sne.tl.neuron_edit(toy_adata, {"condition": "control"}, {"condition": "treated"}, **kwargs)
    caught = _caught(lambda: sne.tl.neuron_edit(  # replaces the result: a warning
        toy_adata, {"condition": "control"}, {"condition": "treated"}, **kwargs))
    assert caught and all(w.filename == __file__ for w in caught)
    cyto = toy_adata.copy()
    cyto.obs["batch"] = np.where(np.arange(cyto.n_obs) % 2 == 0, "b1", "b2")
    cyto.obs["reference"] = cyto.obs["condition"] == "control"
    caught = _caught(lambda: sne.tl.batch_correct(
        cyto, "batch", reference_key="reference", reference_value=True, keep_zeros=True,
        edit_layer="input", min_reference_cells=10, progress=False))
    assert any(w.category is FutureWarning for w in caught)
    assert all(w.filename == __file__ for w in caught)


def test_tl_data_warnings_point_at_the_callers_line(toy_adata):
    """Raw counts, a model that saw the held-out cells, cells far outside the source range."""
    counts = toy_adata.copy()
    counts.X = np.round(np.abs(counts.X) * 10).astype(np.float32)
    model = sne.NeuronEditor(toy_adata, hidden=(16,), n_latent=4).train(max_epochs=1,
                                                                        progress=False)
    far = toy_adata.copy()
    far.X[(far.obs["cell_type"] == "C").to_numpy()] += 50.0
    calls = {
        "raw counts": lambda: sne.tl.neuron_edit(
            counts, {"condition": "control"}, {"condition": "treated"},
            apply_to={"condition": "control"}, max_epochs=1, progress=False),
        "not out of sample": lambda: sne.tl.predict_perturbation(
            toy_adata, "condition", control="control", perturbed="treated", groupby="cell_type",
            predict_for="C", model=model),
        "outside the range": lambda: sne.tl.neuron_edit(
            far, {"condition": "control", "cell_type": ["A", "B"]},
            {"condition": "treated", "cell_type": ["A", "B"]},
            apply_to={"condition": "control", "cell_type": "C"}, edit_layer="input",
            progress=False),
    }
    for what, call in calls.items():
        caught = _caught(call)
        assert any(what in str(w.message) for w in caught), what
        assert all(w.filename == __file__ for w in caught), (what, [w.filename for w in caught])
