"""Golden-output cases: what today's sc_neuronedit computes on small fixed inputs.

Each case is a function ``case(workdir) -> dict[str, np.ndarray]`` registered in
:data:`CASES`. ``make_golden.py`` stores the dicts as ``<case>.npz`` next to this
file; ``tests/test_golden.py`` recomputes them and compares bit for bit. Both import
this module, so a case is defined once.

The inputs are generated here with fixed NumPy generators (no data files), except
:func:`real_kang_slice`, which reads the shared Kang PBMC file, and the two model
cases, which load the models saved in ``model_format1/`` and ``model_format2/``.
Networks are tiny (one hidden layer of 16, 4 latent units, 2-3 epochs): the cases
guard the arithmetic, not the quality of a fit.

Keys are paths: ``"<call>/<what>"``, with ``.uns`` dicts walked (``params`` and
the training time left out: a configuration echo and a clock) and DataFrames
flattened into one array per column (``"<table>/<column>"``, plus ``"<table>/index"``
when the index is not a plain range).

Notes
-----
Bits reproduce only with the same CPU kernels and thread count: run cases through
:func:`run_case`, which pins torch to one thread and fixes the global seeds.
"""

from __future__ import annotations

import contextlib
import json
import random
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch
from scipy import sparse

import sc_neuronedit as sne

GOLDEN_DIR = Path(__file__).resolve().parent
MODEL_FORMAT1 = GOLDEN_DIR / "model_format1"
MODEL_FORMAT2 = GOLDEN_DIR / "model_format2"
KANG_FILE = "kang_pbmc_valid.h5ad"
GATES_FILE = "cytonorm_gates.h5ad"

MODEL = dict(hidden=(16,), n_latent=4)
TRAIN = dict(max_epochs=3, progress=False, device="cpu", random_state=0)
TL = dict(max_epochs=3, progress=False, device="cpu", random_state=0, model_kwargs=MODEL)
DECODES = ("edited_residual", "residual", "plain")
CELL_TYPES = ("A", "B", "C", "D")
#: Rows kept of outputs too large to store whole (every STRIDE-th).
STRIDE = 40

#: The residual edit's cap on cells per side when these outputs were recorded; the cases
#: draw more, so the random subsample is exercised (no import: the guard must not move with
#: the code it guards).
RESIDUAL_MAX_CELLS = 10_000


# ---------------------------------------------------------------------- inputs
def synthetic(n_cells: int = 400, n_features: int = 24, *, seed: int = 0) -> ad.AnnData:
    """Four cell types in two conditions and two populations, with known effects.

    ``stim`` adds 1.5 to features 2-5 everywhere, 2 to features 6-7 in population
    ``P2`` only, and switches feature 8 on (+3) in a random half of the cells;
    feature 1 marks ``P2`` (+2). The share of ``stim`` differs between cell types,
    so that ``groupby`` has a composition change to undo. Features 12 onwards are
    clipped at 0 (expression-like: the ``nonnegative`` policies act on them).
    ``var["hv"]`` marks the first 16 features (a ``mask_var`` subset).
    """
    rng = np.random.default_rng(seed)
    types = rng.choice(len(CELL_TYPES), size=n_cells, p=[0.3, 0.25, 0.25, 0.2])
    stim = rng.random(n_cells) < np.array([0.3, 0.5, 0.6, 0.5])[types]
    p2 = rng.random(n_cells) < 0.45
    X = rng.normal(0, 1, (len(CELL_TYPES), n_features))[types] + rng.normal(0, 0.5, (n_cells, n_features))
    X[:, 1] += 2.0 * p2
    X[stim, 2:6] += 1.5
    X[stim & p2, 6:8] += 2.0
    X[stim, 8] += 3.0 * (rng.random(int(stim.sum())) < 0.5)
    X[:, 12:] = np.maximum(X[:, 12:], 0)
    obs = pd.DataFrame({
        "cell_type": pd.Categorical(np.asarray(CELL_TYPES)[types], categories=CELL_TYPES),
        "condition": pd.Categorical(np.where(stim, "stim", "control"), categories=["control", "stim"]),
        "population": pd.Categorical(np.where(p2, "P2", "P1"), categories=["P1", "P2"]),
    }, index=[f"cell{i}" for i in range(n_cells)])
    var = pd.DataFrame({"hv": np.arange(n_features) < 16}, index=[f"g{j:02d}" for j in range(n_features)])
    return ad.AnnData(X.astype(np.float32), obs=obs, var=var)


def synthetic_counts(*, seed: int = 0) -> ad.AnnData:
    """:func:`synthetic` as sparse log counts (CSR, about a fifth non-zero), so that
    prediction takes the sparse first-layer path."""
    adata = synthetic(seed=seed)
    rng = np.random.default_rng(seed + 100)
    counts = rng.poisson(np.exp(adata.X.astype(np.float64) - 2.5))
    adata.X = sparse.csr_matrix(np.log1p(counts).astype(np.float32))
    return adata


def combination_data(n_per: int = 150, n_features: int = 12, *, seed: int = 1) -> ad.AnnData:
    """Conditions control, A, B and A+B; drug A raises features 2-3, drug B scales
    features 4-5 by 1.4 in ``P1``, and the combination adds an interaction of +1 on
    feature 6 in ``P2``. Feature 0 marks ``P2``; features 8 onwards are clipped at 0."""
    rng = np.random.default_rng(seed)
    conditions = np.repeat(["control", "A", "B", "A+B"], n_per)
    n = len(conditions)
    p2 = rng.random(n) < 0.4
    X = rng.normal(1.0, 0.6, (n, n_features))
    X[:, 0] += 2.5 * p2
    a = np.isin(conditions, ["A", "A+B"])
    b = np.isin(conditions, ["B", "A+B"])
    X[a, 2:4] += 1.0
    X[b & ~p2, 4:6] *= 1.4
    X[(conditions == "A+B") & p2, 6] += 1.0
    X[:, 8:] = np.maximum(X[:, 8:] - 0.8, 0)
    obs = pd.DataFrame({
        "condition": pd.Categorical(conditions, categories=["control", "A", "B", "A+B"]),
        "population": pd.Categorical(np.where(p2, "P2", "P1"), categories=["P1", "P2"]),
    }, index=[f"cell{i}" for i in range(n)])
    return ad.AnnData(X.astype(np.float32), obs=obs,
                      var=pd.DataFrame(index=[f"m{j:02d}" for j in range(n_features)]))


def batch_data(sizes: Mapping[str, tuple[int, int]] | None = None, n_features: int = 8, *,
               seed: int = 2) -> ad.AnnData:
    """Batches with a reference sample (``reference=True``) and a second sample (+1 on
    the last feature) each; batch ``b`` distorts features 0-4 by ``1.3 x + 0.5``,
    batch ``c`` features 2-6 by ``0.8 x - 0.3``. ``sizes``: batch -> (reference cells,
    other cells). Feature 0 marks population ``P2``; the last two features are clipped
    at 0 (``nonnegative="keep_zeros"`` keeps their zeros)."""
    sizes = sizes or {"a": (100, 100), "b": (100, 100), "c": (100, 100)}
    rng = np.random.default_rng(seed)
    blocks, obs = [], []
    for batch, (n_ref, n_other) in sizes.items():
        for ref, n in ((True, n_ref), (False, n_other)):
            p2 = rng.random(n) < 0.4
            x = rng.normal(2.0, 0.6, (n, n_features))
            x[:, 0] += 2.0 * p2
            if not ref:
                x[:, -1] += 1.0
            if batch == "b":
                x[:, :5] = 1.3 * x[:, :5] + 0.5
            elif batch == "c":
                x[:, 2:7] = 0.8 * x[:, 2:7] - 0.3
            x[:, -2:] = np.maximum(x[:, -2:] - 1.8, 0)
            blocks.append(x)
            obs += [(batch, ref, "P2" if p else "P1") for p in p2]
    obs = pd.DataFrame(obs, columns=["batch", "reference", "population"])
    obs["batch"] = obs["batch"].astype("category")
    obs["population"] = obs["population"].astype("category")
    obs.index = [f"cell{i}" for i in range(len(obs))]
    return ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs,
                      var=pd.DataFrame(index=[f"ch{j}" for j in range(n_features)]))


def big_batches() -> ad.AnnData:
    """Two batches with more than :data:`RESIDUAL_MAX_CELLS` reference cells each, 6
    features: every draw of at most that many cells happens."""
    n = RESIDUAL_MAX_CELLS
    return batch_data({"a": (n + 50, 100), "b": (n + 120, 150)}, n_features=6, seed=3)


def kang_slice() -> ad.AnnData:
    """684 Kang PBMCs (B, CD14+Mono, NK; both conditions) x the 150 genes of highest
    variance, CSR. Genes are chosen here with NumPy, not scanpy's HVG flavours, so the
    slice does not move with scanpy."""
    path = sne.datasets.data_dir() / KANG_FILE
    if not path.is_file():  # never download from a test
        raise FileNotFoundError(path)
    adata = sne.datasets.kang_pbmc()
    adata = adata[adata.obs["cell_type"].isin(["B", "CD14+Mono", "NK"]).to_numpy()].copy()
    adata.obs["cell_type"] = adata.obs["cell_type"].cat.remove_unused_categories()
    X = sparse.csr_matrix(adata.X, dtype=np.float64)
    variance = np.asarray(X.multiply(X).mean(axis=0)).ravel() - np.asarray(X.mean(axis=0)).ravel() ** 2
    genes = np.sort(np.argsort(-variance, kind="stable")[:150])
    return adata[:, genes].copy()


def gates_slice() -> ad.AnnData:
    """2,400 Gates CyTOF cells (all four batches, both volunteers), ``arcsinh(x/5)`` in
    ``layers["arcsinh"]``, the 37 marker channels in ``var["marker_channel"]``."""
    path = sne.datasets.data_dir() / GATES_FILE
    if not path.is_file():  # never download from a test
        raise FileNotFoundError(path)
    cytof = sne.datasets.cytonorm_gates()
    keep = np.sort(np.random.default_rng(0).choice(cytof.n_obs, 2400, replace=False))
    cytof = cytof[keep].copy()
    sne.pp.arcsinh(cytof, 5)
    marker = cytof.var["marker"].astype(str)
    technical = marker.str.match("^BC[0-9]$") | marker.isin(["DNA1", "DNA2", "beadDist"])
    cytof.var["marker_channel"] = (marker != "") & ~technical
    return cytof


# ------------------------------------------------------------------ recording
def flatten(value, prefix: str, out: dict[str, np.ndarray]) -> None:
    """Store ``value`` under ``prefix`` as arrays: dicts walked, DataFrames by column,
    strings as string arrays, ``None`` dropped."""
    if value is None:
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if k in ("params", "seconds"):  # a configuration echo; wall-clock time
                continue
            flatten(v, f"{prefix}/{k}", out)
    elif isinstance(value, pd.DataFrame):
        if not isinstance(value.index, pd.RangeIndex):
            flatten(np.asarray(value.index), f"{prefix}/index", out)
        for col in value.columns:
            flatten(value[col].to_numpy(), f"{prefix}/{col}", out)
    elif isinstance(value, (torch.Tensor,)):
        out[prefix] = value.detach().cpu().numpy()
    else:
        arr = np.asarray(value)
        out[prefix] = arr.astype(str) if arr.dtype.kind in "OU" else arr


def dense(M) -> np.ndarray:
    return M.toarray() if sparse.issparse(M) else np.asarray(M)


def record_tl(adata, key: str, out: dict, *, stride: int = 1) -> None:
    """What a ``tl`` call wrote under ``key``: the layer's edited rows (every
    ``stride``-th), the ``.obs`` columns ``{key}_edited`` and ``{key}_route`` and the
    ``.uns`` record."""
    edited = adata.obs[f"{key}_edited"].to_numpy()
    rows = np.flatnonzero(edited)[::stride]
    out[f"{key}/layer_rows"] = rows
    out[f"{key}/layer"] = dense(adata.layers[key][rows])
    for col in (f"{key}_edited", f"{key}_route"):
        if col in adata.obs:
            flatten(adata.obs[col].to_numpy(), f"{key}/obs/{col}", out)
    flatten(adata.uns[key], f"{key}/uns", out)


def record_edit(model, cells, edit, prefix: str, out: dict, *, populations=None,
                decodes=DECODES) -> None:
    """``apply_edit`` of ``cells`` in each decode form, and ``edit_statistics``."""
    for form in decodes:
        out[f"{prefix}/apply/{form}"] = model.apply_edit(cells, edit, populations=populations, decode=form)
    flatten(model.edit_statistics(cells, edit, populations=populations), f"{prefix}/statistics", out)


def record_edit_tables(edit, prefix: str, out: dict) -> None:
    """The edit's knots: neurons, and the residual's bin edges and knots."""
    flatten({"source_knots": edit.neurons.source_knots, "target_knots": edit.neurons.target_knots},
            f"{prefix}/neurons", out)
    if edit.residual is not None:
        for field in ("source_edges", "target_edges", "source_knots", "target_knots", "pooled"):
            flatten(getattr(edit.residual, field), f"{prefix}/residual/{field}", out)


def _masks(adata):
    cond, ctype = adata.obs["condition"].to_numpy(), adata.obs["cell_type"].to_numpy()
    learn = ctype != "D"
    return learn & (cond == "control"), learn & (cond == "stim"), ~learn & (cond == "control")


def _editor_suite(data, labels: ad.AnnData, *, model_kwargs=None, groupby="cell_type",
                  populations="population", decodes=DECODES) -> dict:
    """Train on ``data`` (without the stim cells of type D), learn control -> stim
    over types A-C pooled and within populations, apply to type D's control cells."""
    source, target, apply_to = _masks(labels)
    types, cond = labels.obs["cell_type"].to_numpy(), labels.obs["condition"].to_numpy()
    model = sne.NeuronEditor(data, **(model_kwargs or MODEL))
    model.train(cells=~((types == "D") & (cond == "stim")), **TRAIN)
    out = {"encode/all": model.encode(), "encode/apply_to": model.encode(apply_to)}
    pooled = model.learn_edit(source, target, groupby=groupby)
    record_edit(model, apply_to, pooled, "pooled", out, decodes=decodes)
    within = model.learn_edit(source, target, groupby=groupby, populations=populations)
    out["within/own"] = np.asarray(sorted(within.populations))
    record_edit(model, apply_to, within, "within", out, populations=populations, decodes=decodes)
    unweighted = model.learn_edit(source, target)
    record_edit(model, apply_to, unweighted, "unweighted", out, decodes=decodes[:1])
    return out


# ---------------------------------------------------------------------- cases
def editor_dense(workdir: Path) -> dict:
    """Bottleneck edits on a dense AnnData: every decode form, pooled and within
    populations, with and without ``groupby``."""
    adata = synthetic()
    return _editor_suite(adata, adata)


def editor_csr(workdir: Path) -> dict:
    """As :func:`editor_dense` on sparse log counts (the sparse first-layer path), in an
    AnnData and as a bare SciPy CSR matrix."""
    adata = synthetic_counts()
    out = {f"anndata/{k}": v for k, v in _editor_suite(adata, adata).items()}
    types, pops = adata.obs["cell_type"].to_numpy(), adata.obs["population"].to_numpy()
    out.update({f"matrix/{k}": v for k, v in _editor_suite(sparse.csr_matrix(adata.X), adata, groupby=types,
                                                            populations=pops).items()})
    return out


def editor_backed(workdir: Path) -> dict:
    """As :func:`editor_dense` on a backed AnnData (chunked training, rows read from disk)."""
    path = Path(workdir) / "synthetic.h5ad"
    synthetic().write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    try:
        return _editor_suite(backed, backed)
    finally:
        backed.file.close()


def editor_mask_var(workdir: Path) -> dict:
    """A feature subset (``mask_var="hv"``): other features pass through unchanged."""
    adata = synthetic()
    return _editor_suite(adata, adata, model_kwargs={**MODEL, "mask_var": "hv"})


def editor_input(workdir: Path) -> dict:
    """``edit_layer="input"``: per-feature quantile maps, no autoencoder (every decode
    form is ``"plain"``)."""
    adata = synthetic()
    return _editor_suite(adata, adata, model_kwargs={**MODEL, "edit_layer": "input"}, decodes=("plain",))


def editor_array(workdir: Path) -> dict:
    """A plain ndarray (no AnnData): masks, integer indices, label arrays, a boolean
    ``mask_var``."""
    adata = synthetic()
    X = np.asarray(adata.X)
    types, pops = adata.obs["cell_type"].to_numpy(), adata.obs["population"].to_numpy()
    out = {f"full/{k}": v for k, v in _editor_suite(X, adata, groupby=types, populations=pops).items()}
    source, target, apply_to = _masks(adata)
    model = sne.NeuronEditor(X, mask_var=adata.var["hv"].to_numpy(), **MODEL).train(**TRAIN)
    edit = model.learn_edit(np.flatnonzero(source), np.flatnonzero(target), groupby=types)
    record_edit(model, np.flatnonzero(apply_to), edit, "masked", out)
    return out


def editor_matrix_cells(workdir: Path) -> dict:
    """Cells given as matrices (full width and model width), populations per side."""
    adata = synthetic()
    source, target, apply_to = _masks(adata)
    X, pops = np.asarray(adata.X), adata.obs["population"].to_numpy().astype(str)
    out = {}
    model = sne.NeuronEditor(adata, mask_var="hv", **MODEL).train(**TRAIN)
    cols = adata.var["hv"].to_numpy()
    edit = model.learn_edit(X[source], X[target][:, cols])  # one side full width, one model width
    out["encode/matrix"] = model.encode(X[apply_to])
    record_edit(model, X[apply_to], edit, "pooled", out)
    record_edit(model, sparse.csr_matrix(X[apply_to]), edit, "pooled_csr", out, decodes=DECODES[:1])
    within = model.learn_edit(X[source], X[target], populations=(pops[source], pops[target]))
    record_edit(model, X[apply_to], within, "within", out, populations=pops[apply_to])
    return out


def editor_big(workdir: Path) -> dict:
    """More than :data:`RESIDUAL_MAX_CELLS` cells on each side: the residual edit
    draws its cells (one generator for both sides). Only a few hundred predicted
    cells and the edit's knots are kept."""
    adata = big_batches()
    batch, ref = adata.obs["batch"].to_numpy(), adata.obs["reference"].to_numpy()
    source, target = ref & (batch == "a"), ref & (batch == "b")
    model = sne.NeuronEditor(adata, **MODEL).train(**{**TRAIN, "max_epochs": 2})
    edit = model.learn_edit(source, target)
    out = {}
    record_edit_tables(edit, "edit", out)
    cells = np.flatnonzero(source)[::STRIDE]
    out["apply/cells"] = cells
    out["apply/edited_residual"] = model.apply_edit(cells, edit)
    return out


def tl_neuron_edit(workdir: Path) -> dict:
    """:func:`sne.tl.neuron_edit`, pooled with ``groupby``, and within populations
    with ``mask_var`` and ``decode="residual"``."""
    adata, out = synthetic(), {}
    train = ["A", "B", "C"]
    source = {"cell_type": train, "condition": "control"}
    target = {"cell_type": train, "condition": "stim"}
    apply_to = {"cell_type": "D", "condition": "control"}
    sne.tl.neuron_edit(adata, source, target, apply_to=apply_to, groupby="cell_type", key_added="ne", **TL)
    sne.tl.neuron_edit(adata, source, target, apply_to=apply_to, groupby="cell_type",
                       population_key="population", mask_var="hv", decode="residual",
                       key_added="ne_pop", **TL)
    for key in ("ne", "ne_pop"):
        record_tl(adata, key, out)
    return out


def tl_predict_perturbation(workdir: Path) -> dict:
    """:func:`sne.tl.predict_perturbation` of type D held out; once plain, once with
    ``edit_layer="auto"`` (the self-check's leave-one-group-out) within populations."""
    adata, out = synthetic(), {}
    args = dict(control="control", perturbed="stim", groupby="cell_type", predict_for="D")
    sne.tl.predict_perturbation(adata, "condition", key_added="pp", **args, **TL)
    sne.tl.predict_perturbation(adata, "condition", key_added="pp_auto", edit_layer="auto",
                                population_key="population", **args, **TL)
    for key in ("pp", "pp_auto"):
        record_tl(adata, key, out)
    return out


def tl_batch_correct(workdir: Path) -> dict:
    """:func:`sne.tl.batch_correct`: the default (``edit_layer="auto"``, self-check) to
    batch ``a``; the pooled ``"mixture"`` goal; the pooled average within populations."""
    adata, out = batch_data(), {}
    args = dict(reference_key="reference", reference_value=True)
    sne.tl.batch_correct(adata, "batch", reference_batch="a", key_added="bc", **args, **TL)
    sne.tl.batch_correct(adata, "batch", pooled_goal="mixture", edit_layer="bottleneck",
                         key_added="bc_mixture", **args, **TL)
    sne.tl.batch_correct(adata, "batch", population_key="population", key_added="bc_pop", **args, **TL)
    for key in ("bc", "bc_mixture", "bc_pop"):
        record_tl(adata, key, out)
    return out


def tl_batch_correct_calibrate_big(workdir: Path) -> dict:
    """``calibrate=True`` with more than :data:`RESIDUAL_MAX_CELLS` reference cells in the
    goal batch and in the corrected one: ``_subsample`` draws on both sides."""
    adata, out = big_batches(), {}
    sne.tl.batch_correct(adata, "batch", reference_key="reference", reference_value=True,
                         reference_batch="a", edit_layer="bottleneck", calibrate=True,
                         key_added="bc_cal", **{**TL, "max_epochs": 2})
    record_tl(adata, "bc_cal", out, stride=STRIDE)
    return out


def tl_predict_combination(workdir: Path) -> dict:
    """:func:`sne.tl.predict_combination` of A and B (both routes, their agreement)."""
    adata, out = combination_data(), {}
    sne.tl.predict_combination(adata, "condition", control="control", drug_a="A", drug_b="B",
                               key_added="comb", **TL)
    record_tl(adata, "comb", out)
    return out


def tl_synergy(workdir: Path) -> dict:
    """:func:`sne.tl.synergy` with 3 bootstrap reruns, pooled and per population."""
    adata, out = combination_data(), {}
    args = dict(control="control", combinations={"A+B": ("A", "B")}, n_resamples=3)
    sne.tl.synergy(adata, "condition", key_added="syn", **args, **TL)
    sne.tl.synergy(adata, "condition", key_added="syn_pop", population_key="population", **args, **TL)
    for key in ("syn", "syn_pop"):
        flatten(adata.uns[key], f"{key}/uns", out)
    return out


def real_kang_slice(workdir: Path) -> dict:
    """Kang PBMCs (:func:`kang_slice`): NK cells' interferon response predicted from B
    cells and CD14+ monocytes, by ``predict_perturbation`` and by ``apply_edit``."""
    adata, out = kang_slice(), {}
    sne.tl.predict_perturbation(adata, "condition", control="control", perturbed="stimulated",
                                groupby="cell_type", predict_for="NK", key_added="pp", **TL)
    record_tl(adata, "pp", out)
    cond, ctype = adata.obs["condition"].to_numpy(), adata.obs["cell_type"].to_numpy()
    nk = ctype == "NK"
    model = sne.NeuronEditor(adata, **MODEL).train(cells=~(nk & (cond == "stimulated")), **TRAIN)
    edit = model.learn_edit(~nk & (cond == "control"), ~nk & (cond == "stimulated"), groupby="cell_type")
    record_edit(model, nk & (cond == "control"), edit, "editor", out)
    return out


def real_gates_slice(workdir: Path) -> dict:
    """:func:`sne.tl.batch_correct` with its default ``edit_layer="auto"`` on
    :func:`gates_slice`: the self-check finds that the bottleneck widens the spread gap
    and switches to the input layer (the branch that swaps the model mid-call)."""
    cytof, out = gates_slice(), {}
    sne.tl.batch_correct(cytof, "batch", reference_key="reference", reference_value=True,
                         layer="arcsinh", mask_var="marker_channel", max_epochs=10,
                         model_kwargs=dict(hidden=(64,), n_latent=16), progress=False,
                         device="cpu", random_state=0)
    assert cytof.uns["batch_corrected"]["self_check_summary"]["chosen"] == "input, pooled"
    record_tl(cytof, "batch_corrected", out)
    return out


# ---------------------------------------------------------------- saved models
def format1_model() -> sne.NeuronEditor:
    """The bottleneck model saved in ``model_format1/`` (``format_version`` 1), on
    :func:`synthetic` (seed 5) with ``mask_var="hv"``."""
    return sne.NeuronEditor(synthetic(seed=5), mask_var="hv", **MODEL).train(**TRAIN)


def format2_model() -> sne.NeuronEditor:
    """The ``edit_layer="input"`` model saved in ``model_format2/`` (``format_version`` 2)."""
    return sne.NeuronEditor(synthetic(seed=6), edit_layer="input", **MODEL).train(**TRAIN)


def model_outputs(model) -> dict:
    """Encode every cell; learn control -> stim over types A-C, apply to type D."""
    adata = model.adata
    source, target, apply_to = _masks(adata)
    out = {"encode": model.encode()}
    edit = model.learn_edit(source, target, groupby="cell_type", populations="population")
    record_edit(model, apply_to, edit, "within", out, populations="population")
    return out


def saved_format(folder: Path) -> int:
    return json.loads((Path(folder) / "config.json").read_text())["format_version"]


def model_format1(workdir: Path) -> dict:
    """``NeuronEditor.load`` of the committed format-1 model, then its edits."""
    return model_outputs(sne.NeuronEditor.load(MODEL_FORMAT1, synthetic(seed=5), device="cpu"))


def model_format2(workdir: Path) -> dict:
    """``NeuronEditor.load`` of the committed format-2 (input layer) model, then its edits."""
    return model_outputs(sne.NeuronEditor.load(MODEL_FORMAT2, synthetic(seed=6), device="cpu"))


CASES: dict[str, Callable[[Path], dict]] = {f.__name__: f for f in (
    editor_dense, editor_csr, editor_backed, editor_mask_var, editor_input, editor_array,
    editor_matrix_cells, editor_big, tl_neuron_edit, tl_predict_perturbation, tl_batch_correct,
    tl_batch_correct_calibrate_big, tl_predict_combination, tl_synergy, real_kang_slice,
    real_gates_slice, model_format1, model_format2,
)}
#: Cases that read a shared data file (name in ``sne.datasets.data_dir()``).
NEEDS_DATA = {"real_kang_slice": KANG_FILE, "real_gates_slice": GATES_FILE}


@contextlib.contextmanager
def one_thread():
    """torch on one thread (numba's kernels follow torch's count), global seeds fixed;
    the caller's threads and random states are restored."""
    threads = torch.get_num_threads()
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.set_num_threads(1)
            torch.manual_seed(0)
            np.random.seed(0)
            random.seed(0)
            yield
    finally:
        torch.set_num_threads(threads)
        np.random.set_state(np_state)
        random.setstate(py_state)


def run_case(name: str, workdir: Path) -> dict[str, np.ndarray]:
    """Case ``name`` on one thread with fixed seeds; warnings (outside the source range,
    population fallbacks) are silenced, they are not what is guarded."""
    with one_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = CASES[name](Path(workdir))
    return {k: np.asarray(v) for k, v in result.items()}
