"""API conventions (scanpy style) and the command line."""

import inspect

import pytest

import sc_neuronedit as sne
from sc_neuronedit.cli import main

TOOLS = [sne.tl.neuron_edit, sne.tl.predict_perturbation, sne.tl.batch_correct,
         sne.tl.predict_combination, sne.tl.synergy]
PUBLIC = [*TOOLS, sne.pp.arcsinh, sne.pl.loss, sne.pl.edit_curves, sne.pl.reg_mean,
          sne.pl.distributions, sne.pl.batch_densities, sne.pl.synergy, sne.pl.self_check]


@pytest.mark.parametrize("func", PUBLIC, ids=lambda f: f.__name__)
def test_adata_first_at_most_three_positional(func):
    params = list(inspect.signature(func).parameters.values())
    assert params[0].name == "adata"
    positional = [p for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert len(positional) <= 3
    assert func.__doc__ and "Parameters" in func.__doc__


def test_each_tool_has_its_own_key_added():
    keys = [inspect.signature(f).parameters["key_added"].default
            for f in TOOLS]
    assert len(set(keys)) == len(keys)


def test_cli_demo_runs_on_real_data(capsys, tmp_path):
    png = tmp_path / "demo.png"
    assert main(["demo", "--cell-type", "NK", "--max-epochs", "2", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "neuron editing" in out and "ISG15" in out and f"wrote {png}" in out
    assert png.stat().st_size > 10_000


def test_cli_reports_bad_input(tmp_path, capsys, kang):
    path = tmp_path / "k.h5ad"
    kang.write_h5ad(path)
    code = main(["predict", str(path), str(tmp_path / "o.h5ad"), "--condition-key", "condition",
                 "--control", "control", "--perturbed", "stim", "--groupby", "cell_type",
                 "--predict-for", "NK", "--max-epochs", "1"])
    assert code == 2
    assert "--perturbed 'stim' is not a value of .obs['condition']" in capsys.readouterr().err
    assert main(["predict", str(path), str(tmp_path / "o.h5ad"), "--condition-key", "condition",
                 "--control", "control", "--perturbed", "stimulated", "--groupby", "celltype",
                 "--predict-for", "NK"]) == 2
    assert "--groupby: 'celltype' is not a column of .obs" in capsys.readouterr().err


def test_cli_predict_summary_mask_var_and_nonnegative(tmp_path, capsys, kang):
    import anndata as ad
    import scanpy as sc

    adata = kang.copy()
    sc.pp.highly_variable_genes(adata, n_top_genes=500)
    path, out = tmp_path / "k.h5ad", tmp_path / "o.h5ad"
    adata.write_h5ad(path)
    assert main(["predict", str(path), str(out), "--condition-key", "condition", "--control",
                 "control", "--perturbed", "stimulated", "--groupby", "cell_type", "--predict-for",
                 "NK", "--max-epochs", "1", "--mask-var", "highly_variable"]) == 0
    text = capsys.readouterr().out
    assert "predicted 54 'control' cells of NK (.obs['cell_type']) as 'stimulated'" in text
    assert "trained 1 epochs (best epoch 1) in" in text and "on 500 of 6998 features" in text
    assert "outside the range of the source cells" in text
    res = ad.read_h5ad(out).uns["predicted_perturbation"]
    assert res["params"]["n_features"] == 500 and res["params"]["nonnegative"] == "clip"


def test_cli_help_has_examples_and_version(capsys):
    import subprocess
    import sys

    for command in ("predict", "batch-correct", "combination", "demo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert "example" in text and "exit status" in text
        if command == "predict":
            assert "--mask-var COLUMN" in text and ".obs column of conditions" in text
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"neuronedit {sne.__version__}"
    # --help must not wait for torch: the package loads its submodules on first use
    code = ("import sys; from sc_neuronedit.cli import main\n"
            "try: main(['predict', '--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'scanpy', 'anndata') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


# --------------------------------------------------------------- batch-correct

@pytest.fixture
def batches_h5ad(tmp_path):
    """3 batches x 2 populations x reference yes/no (40 reference cells per batch),
    10 features; each batch shifts all features; .var['marker'] is empty for the last
    feature (like Time)."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    blocks, obs = [], []
    for b, shift in (("b1", 0.0), ("b2", 0.5), ("b3", -0.5)):
        for pop, centre in (("P", 1.0), ("Q", 3.0)):
            for ref in (True, False):
                blocks.append(np.abs(rng.normal(centre + shift, 0.5, size=(20, 10))) * 5)
                obs += [(b, pop, ref)] * 20
    obs = pd.DataFrame(obs, columns=["batch", "population", "reference"])
    obs = obs.astype({"batch": "category", "population": "category"})
    obs.index = [f"c{i}" for i in range(len(obs))]
    var = pd.DataFrame({"marker": [f"M{j}" for j in range(9)] + [""]},
                       index=[f"ch{j}" for j in range(10)])
    path = tmp_path / "in.h5ad"
    ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs, var=var).write_h5ad(path)
    return path


def _batch_args(src, out, *extra):
    return ["batch-correct", str(src), str(out), "--batch-key", "batch", "--reference-key",
            "reference", "--reference-value", "true", "--max-epochs", "2",
            "--min-reference-cells", "20", *extra]  # later options win: extra overrides


def test_cli_batch_correct_writes_results_and_summary(batches_h5ad, tmp_path, capsys):
    import anndata as ad
    import numpy as np

    out = tmp_path / "out.h5ad"
    code = main(_batch_args(batches_h5ad, out, "--arcsinh", "5", "--var-nonempty", "marker"))
    assert code == 0
    res = ad.read_h5ad(out)
    assert {"arcsinh", "batch_corrected"} <= set(res.layers)
    assert set(res.uns["batch_corrected"]["batches"]) == {"b1", "b2", "b3"}
    assert res.obs["batch_corrected_edited"].all()
    # the feature with an empty marker name passes through unchanged
    np.testing.assert_array_equal(res.layers["batch_corrected"][:, 9], res.layers["arcsinh"][:, 9])
    printed = capsys.readouterr().out
    assert "corrected 3 of 3 batches" in printed and "b2" in printed and f"wrote {out}" in printed
    assert "passed through unchanged: ch9" in printed
    # the default (edit_layer="auto") says what its self-check chose, and with what skill
    assert "self-check (each batch's reference cells split in half): " in printed
    assert " interval " in printed and "spread gap" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad", "out.h5ad"]  # no temp left


def test_cli_batch_correct_reference_batch_stays(batches_h5ad, tmp_path, capsys):
    import anndata as ad
    import numpy as np

    out = tmp_path / "out.h5ad"
    assert main(_batch_args(batches_h5ad, out, "--reference-batch", "b1", "--reference-value",
                            "1", "--key-added", "bc", "--max-epochs", "1")) == 0
    res = ad.read_h5ad(out)
    b1 = (res.obs["batch"] == "b1").to_numpy()
    np.testing.assert_array_equal(res.layers["bc"][b1], res.X[b1])
    assert "b1" in capsys.readouterr().out


@pytest.mark.parametrize("extra, expected", [
    (["--reference-value", "maybe"], "available: False, True"),
    (["--reference-key", "population", "--reference-value", "R"], "available: P, Q"),
    (["--reference-batch", "b9"], "available: b1, b2, b3"),
    (["--batch-key", "run"], "'run' is not a column of .obs"),
    (["--reference-key", "ref"], "--reference-key: 'ref' is not a column of .obs"),
    (["--mask-var", "marker"], "use --var-nonempty marker"),
    (["--min-reference-cells", "50"], "fewer than 50 reference cells"),
])
def test_cli_batch_correct_user_errors(batches_h5ad, tmp_path, capsys, extra, expected):
    out = tmp_path / "out.h5ad"
    assert main(_batch_args(batches_h5ad, out, *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("neuronedit: error:") and expected in err
    assert "Traceback" not in err
    assert not out.exists()


def test_cli_batch_correct_missing_input_and_same_output(batches_h5ad, tmp_path, capsys):
    assert main(_batch_args(tmp_path / "nope.h5ad", tmp_path / "o.h5ad")) == 2
    assert "input file not found" in capsys.readouterr().err
    before = batches_h5ad.read_bytes()
    assert main(_batch_args(batches_h5ad, batches_h5ad)) == 2
    assert "is the input file" in capsys.readouterr().err
    assert batches_h5ad.read_bytes() == before
    assert main(_batch_args(batches_h5ad, tmp_path / "no_dir" / "o.h5ad")) == 2
    assert "output directory does not exist" in capsys.readouterr().err


def test_cli_reference_value_follows_column_type():
    import anndata as ad
    import numpy as np
    import pandas as pd

    from sc_neuronedit.cli import _obs_value

    obs = pd.DataFrame({"flag": [True, False], "num": [1, 2], "x": [0.5, 1.5],
                        "cat": pd.Categorical(["a", "b"]), "icat": pd.Categorical([3, 4])},
                       index=["c0", "c1"])
    adata = ad.AnnData(np.zeros((2, 1), dtype=np.float32), obs=obs)
    assert _obs_value(adata, "flag", "TRUE", "--v") is True
    assert _obs_value(adata, "flag", "0", "--v") is False
    assert _obs_value(adata, "num", "2", "--v") == 2
    assert _obs_value(adata, "x", "0.5", "--v") == 0.5
    assert _obs_value(adata, "cat", "b", "--v") == "b"
    assert _obs_value(adata, "icat", "4", "--v") == 4
    with pytest.raises(ValueError, match=r"int64 column: give a number\); available: 1, 2"):
        _obs_value(adata, "num", "two", "--v")


def test_cli_write_is_atomic(tmp_path, monkeypatch):
    from pathlib import Path

    import anndata as ad
    import numpy as np

    from sc_neuronedit.cli import _write_atomic

    adata = ad.AnnData(np.ones((3, 2), dtype=np.float32))
    out = tmp_path / "o.h5ad"

    def broken(self, path, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", broken)
    with pytest.raises(OSError, match="disk full"):
        _write_atomic(adata, out)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    _write_atomic(adata, out)
    assert ad.read_h5ad(out).shape == (3, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["o.h5ad"]


def test_cli_combination_scores_synergy(tmp_path, capsys):
    import anndata as ad
    from test_combination import drugs

    src, out = tmp_path / "in.h5ad", tmp_path / "out.h5ad"
    drugs(1.0, n=100).write_h5ad(src)
    args = ["combination", str(src), str(out), "--condition-key", "condition", "--control", "ctrl",
            "--drug-a", "A", "--drug-b", "B", "--max-epochs", "3", "--n-resamples", "5"]
    assert main([*args, "--combination", "AB"]) == 0
    assert "synergy of AB" in capsys.readouterr().out
    assert "summary" in ad.read_h5ad(out).uns["combination"]
    assert main([*args[:-4], "--combination", "AC", "--max-epochs", "1"]) == 2
    assert "'AC' is not a value of .obs['condition']" in capsys.readouterr().err


def _public_api():
    """``(name, object)`` for everything in the ``__all__`` of the package and its public
    subpackages, and the public methods (incl. class methods) the exported classes define."""
    import inspect

    import sc_neuronedit as sne

    modules = {"sne": sne, "sne.tl": sne.tl, "sne.pp": sne.pp, "sne.pl": sne.pl,
               "sne.metrics": sne.metrics, "sne.datasets": sne.datasets}
    for prefix, module in modules.items():
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue
            yield f"{prefix}.{name}", obj
            if not inspect.isclass(obj):
                continue
            for attr in inspect.classify_class_attrs(obj):
                if (attr.name.startswith("_")
                        or attr.kind not in ("method", "class method", "static method")
                        or not attr.defining_class.__module__.startswith("sc_neuronedit")):
                    continue
                yield f"{prefix}.{name}.{attr.name}", getattr(obj, attr.name)


def _doc_sections(doc: str) -> dict[str, list[str]]:
    """numpydoc sections of a docstring: title -> its lines (``Title`` over a ``---`` rule)."""
    import inspect

    lines = inspect.cleandoc(doc).splitlines()
    sections, current = {}, None
    for i, line in enumerate(lines):
        if (i + 1 < len(lines) and line.strip() and set(lines[i + 1].strip()) == {"-"}
                and len(lines[i + 1].strip()) >= len(line.strip())):
            current = line.strip()
            sections[current] = []
        elif current is not None and not set(line.strip()) == {"-"}:
            sections[current].append(line)
    return sections


def test_public_api_is_documented():
    """Every public object has a numpydoc docstring with an example (issue 5): an ``Examples``
    section with ``>>>`` lines, and a ``Parameters`` section naming every parameter."""
    import inspect

    problems = []
    for name, obj in _public_api():
        doc = inspect.getdoc(obj) or ""
        sections = _doc_sections(doc)
        if not any(line.lstrip().startswith(">>>") for line in sections.get("Examples", [])):
            problems.append(f"{name}: no Examples section with >>> lines")
        params = [p.name for p in inspect.signature(obj).parameters.values()
                  if p.name not in ("self", "cls")]
        if not params:
            continue
        if "Parameters" not in sections:
            problems.append(f"{name}: no Parameters section")
            continue
        # entries are the unindented lines, e.g. "source, target" or "n_genes : int"
        entries = [line.split(":")[0] for line in sections["Parameters"]
                   if line.strip() and not line[0].isspace()]
        documented = {part.strip().lstrip("*") for entry in entries for part in entry.split(",")}
        missing = [p for p in params if p not in documented]
        if missing:
            problems.append(f"{name}: parameters not in its Parameters section: {missing}")
    assert not problems, "\n".join(problems)
