"""The input checks every tl function runs first: the message says what was wrong and
how to fix it, and the AnnData is exactly as before (docs/guide/checks.md: "What is checked")."""

import warnings

import numpy as np
import pytest
from conftest import assert_unchanged, snapshot

import sc_neuronedit as sne

TINY = {"max_epochs": 1, "progress": False, "device": "cpu", "model_kwargs": {"hidden": (16,), "n_latent": 4}}


def _with_drugs(adata):
    """Four 'drug' conditions on the toy data, for the combination tools."""
    pairs = {("A", "control"): "control", ("B", "control"): "A", ("C", "control"): "B"}
    adata.obs["drug"] = [pairs.get((ct, c), "A+B") for ct, c in zip(adata.obs.cell_type, adata.obs.condition)]
    return adata


TOOLS = {
    "neuron_edit": lambda a, **kw: sne.tl.neuron_edit(
        a, {"condition": "control"}, {"condition": "treated"}, apply_to={"cell_type": "C"}, **kw),
    "predict_perturbation": lambda a, **kw: sne.tl.predict_perturbation(
        a, "condition", control="control", perturbed="treated", groupby="cell_type",
        predict_for="C", **kw),
    "batch_correct": lambda a, **kw: sne.tl.batch_correct(
        a, "condition", reference_key="cell_type", reference_value="A", **kw),
    "predict_combination": lambda a, **kw: sne.tl.predict_combination(
        _with_drugs(a), "drug", control="control", drug_a="A", drug_b="B", **kw),
    "synergy": lambda a, **kw: sne.tl.synergy(
        _with_drugs(a), "drug", control="control", combinations={"A+B": ("A", "B")}, **kw),
}


def _nan(a):
    a.X[3, 2] = np.nan
    a.X[5, 0] = np.inf


def _dup_var(a):
    a.var_names = ["g0", "g0", *a.var_names[2:]]


def _dup_obs(a):
    a.obs_names = ["cell0", "cell0", *a.obs_names[2:]]


def _counts_layer(a):
    a.layers["counts"] = a.X.copy()


# (bad input, how to make it, tool keyword arguments, error, message)
ROWS = {
    "layer that does not exist": (None, {"layer": "nope"}, KeyError,
                                  r"Layer 'nope' not found; available layers: \(none\)"),
    "key_added equal to the input layer": (_counts_layer, {"layer": "counts", "key_added": "counts"},
                                           ValueError, "equals the input layer"),
    "empty key_added": (None, {"key_added": ""}, ValueError, "key_added must be a non-empty string"),
    "NaN or inf in the data": (_nan, {}, ValueError,
                               r"contains NaN or inf \(1 NaN, 1 inf\) in 2 cell\(s\) \(rows: cell3, "
                               r"cell5\) and 2 feature\(s\) \(g0, g2\)"),
    "duplicate var names": (_dup_var, {}, ValueError,
                            r"adata.var_names has 1 duplicated name\(s\) \(g0\).*var_names_make_unique"),
    "duplicate obs names": (_dup_obs, {}, ValueError, r"obs_names_make_unique\(\)"),
    "unknown nonnegative policy": (None, {"nonnegative": "yes"}, ValueError,
                                   r"nonnegative must be one of 'clip', 'keep_zeros', 'off', got 'yes'"),
}


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("row", ROWS)
def test_bad_input_is_named_and_nothing_changes(toy_adata, tool, row):
    make, kwargs, error, message = ROWS[row]
    if make is not None:
        make(toy_adata)
    if tool in ("predict_combination", "synergy"):
        _with_drugs(toy_adata)  # so that the snapshot already holds the column
    before = snapshot(toy_adata)
    with pytest.raises(error, match=message):
        TOOLS[tool](toy_adata, **kwargs, **TINY)
    assert_unchanged(toy_adata, before)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"source": {"conditon": "control"}}, KeyError, r"'conditon'.*available: cell_type, condition"),
    ({"source": {"condition": "ctrl"}}, ValueError, r"'ctrl'.*control, treated"),
    ({"source": np.arange(360) < 3}, ValueError,
     r"Too few cells in the edit's source and target \(source: 3\); at least 10 are needed"),
    ({"apply_to": np.zeros(360, bool)}, ValueError, "apply_to selects no cells"),
    ({"mask_var": "highly_var"}, KeyError, "highly_var"),
    ({"groupby": "celltype"}, KeyError, r"groupby='celltype' is not a column of adata.obs"),
])
def test_bad_selection_is_named_and_nothing_changes(toy_adata, kwargs, error, message):
    args = {"source": {"condition": "control"}, "target": {"condition": "treated"},
            "apply_to": {"cell_type": "C"}, **kwargs}
    before = snapshot(toy_adata)
    with pytest.raises(error, match=message):
        sne.tl.neuron_edit(toy_adata, args.pop("source"), args.pop("target"), **args, **TINY)
    assert_unchanged(toy_adata, before)


def test_raw_counts_warn_with_the_fix(toy_adata):
    rng = np.random.default_rng(0)
    toy_adata.X = rng.poisson(3.0, size=toy_adata.shape).astype(np.float32) * 10
    fix = (r"looks like raw counts.*adata.layers\['counts'\] = adata.X.copy\(\); "
           r"sc.pp.normalize_total\(adata\); sc.pp.log1p\(adata\).*"
           r"sne.pp.arcsinh\(adata, 5\).*cluster and annotate first")
    with pytest.warns(UserWarning, match=fix):
        TOOLS["neuron_edit"](toy_adata, **TINY)
    assert "neuron_edit" in toy_adata.layers  # a warning, not an error


def test_replacing_a_result_warns_and_a_copy_does_not(toy_adata):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the first run replaces nothing: no warning of ours
        warnings.filterwarnings("ignore", message=".*outside the range", category=UserWarning)
        TOOLS["neuron_edit"](toy_adata, **TINY)
        TOOLS["neuron_edit"](toy_adata, inplace=False, **TINY)  # writes nothing into adata
    with pytest.warns(UserWarning, match=r"adata.layers\['neuron_edit'\] and adata.uns\['neuron_edit'\] "
                                         "already exist.*will be replaced"):
        TOOLS["neuron_edit"](toy_adata, **TINY)


def test_backed_input_predicts_but_is_not_written_into(toy_adata, tmp_path):
    import anndata as ad

    toy_adata.write_h5ad(tmp_path / "toy.h5ad")
    backed = ad.read_h5ad(tmp_path / "toy.h5ad", backed="r")
    with pytest.raises(ValueError, match=r"backed mode.*inplace=False.*adata.to_memory\(\)"):
        TOOLS["neuron_edit"](backed, **TINY)
    assert "neuron_edit" not in backed.layers and "neuron_edit" not in backed.uns
    out = TOOLS["neuron_edit"](backed, inplace=False, **TINY)
    assert out.n_obs == 120 and np.isfinite(out.X).all()
    backed.file.close()


@pytest.mark.parametrize(("call", "message"), [
    (lambda a: sne.tl.predict_perturbation(a, "condition", control="control", perturbed="treated",
                                           groupby="celltype", predict_for="C", **TINY),
     r"^\"groupby='celltype' is not a column of adata.obs"),
    (lambda a: sne.tl.predict_perturbation(a, "Condition", control="control", perturbed="treated",
                                           groupby="cell_type", predict_for="C", **TINY),
     r"^\"condition_key='Condition' is not a column of adata.obs"),
    (lambda a: sne.tl.batch_correct(a, "batch", reference_key="cell_type", reference_value="A", **TINY),
     r"^\"batch_key='batch' is not a column of adata.obs"),
    (lambda a: sne.tl.batch_correct(a, "condition", reference_key="ref", reference_value="A", **TINY),
     r"^\"reference_key='ref' is not a column of adata.obs"),
    (lambda a: sne.tl.predict_combination(a, "Drug", control="control", drug_a="A", drug_b="B",
                                          **TINY),
     r"^\"condition_key='Drug' is not a column of adata.obs"),
    (lambda a: sne.tl.synergy(a, "Drug", control="control", combinations={"A+B": ("A", "B")},
                              **TINY),
     r"^\"condition_key='Drug' is not a column of adata.obs"),
])
def test_a_wrong_column_is_named_by_its_own_argument(toy_adata, call, message):
    # Issue 15: a wrong groupby was reported as "predict_for: 'celltype' is not a column".
    _with_drugs(toy_adata)
    before = snapshot(toy_adata)
    with pytest.raises(KeyError, match=message):
        call(toy_adata)
    assert_unchanged(toy_adata, before)


def test_a_wrong_reference_value_is_named(toy_adata):
    with pytest.raises(ValueError, match=r"^reference_value: value\(s\) \['Z'\] not found"):
        sne.tl.batch_correct(toy_adata, "condition", reference_key="cell_type", reference_value="Z",
                             **TINY)


def test_a_missing_mask_var_column_says_how_to_make_it(kang):
    # Issue 15: the README's NeuronEditor(adata, mask_var="highly_variable") on kang() raised a
    # bare KeyError; the README now runs sc.pp.highly_variable_genes first, and the error says so.
    import scanpy as sc

    adata = kang.copy()
    with pytest.raises(KeyError, match=r"available: \(none\).*sc.pp.highly_variable_genes\(adata, "
                                       r"n_top_genes=2000\) adds adata.var\['highly_variable'\]"):
        sne.NeuronEditor(adata, mask_var="highly_variable")
    sc.pp.highly_variable_genes(adata, n_top_genes=2000)  # the README's line, then it works
    assert sne.NeuronEditor(adata, mask_var="highly_variable").n_features == 2000
