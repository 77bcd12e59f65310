"""API conventions (scanpy style) and the command line."""

import inspect

import pytest

import sc_neuronedit as sne
from sc_neuronedit.cli import main

PUBLIC = [sne.tl.neuron_edit, sne.tl.predict_perturbation, sne.tl.batch_correct, sne.pp.arcsinh,
          sne.pl.loss, sne.pl.edit_curves,
          sne.pl.mean_scatter, sne.pl.distributions]


@pytest.mark.parametrize("func", PUBLIC, ids=lambda f: f.__name__)
def test_adata_first_at_most_three_positional(func):
    params = list(inspect.signature(func).parameters.values())
    assert params[0].name == "adata"
    positional = [p for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
    assert len(positional) <= 3
    assert func.__doc__ and "Parameters" in func.__doc__


def test_each_tool_has_its_own_key_added():
    keys = [inspect.signature(f).parameters["key_added"].default
            for f in (sne.tl.neuron_edit, sne.tl.predict_perturbation, sne.tl.batch_correct)]
    assert len(set(keys)) == len(keys)


def test_cli_demo_runs_on_real_data(capsys):
    assert main(["demo", "--cell-type", "NK", "--max-epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "neuron editing" in out and "ISG15" in out


def test_cli_reports_bad_input(tmp_path, capsys, kang):
    path = tmp_path / "k.h5ad"
    kang.write_h5ad(path)
    code = main(["predict", str(path), str(tmp_path / "o.h5ad"), "--condition-key", "condition",
                 "--control", "control", "--perturbed", "stim", "--groupby", "cell_type",
                 "--predict-for", "NK", "--max-epochs", "1"])
    assert code == 2
    assert "['stim'] not found" in capsys.readouterr().err
