"""Property tests (hypothesis): the edit math on arbitrary activations, and the
``tl`` functions on arbitrary small AnnData objects and selections.

Budgets are fixed (``max_examples``, no deadline) so the file runs in well
under a minute; the AnnData tests train a one-epoch, 4-2-4 autoencoder.
"""

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import assert_same, assert_unchanged, snapshot
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import sparse

import sc_neuronedit as sne
from sc_neuronedit import _kernels, fit_quantile_edit
from sc_neuronedit._edit import weighted_quantiles

EPS = float(np.finfo(np.float32).eps)
MATH = settings(max_examples=40, deadline=None)

# ---------------------------------------------------------------- edit math


@st.composite
def activations(draw, n_neurons, min_cells=1, max_cells=30):
    """Cells x neurons float32 activations with frequent ties and constant neurons."""
    n = draw(st.integers(min_cells, max_cells))
    values = st.one_of(
        st.floats(-1e3, 1e3, width=32),
        st.sampled_from([0.0, 1.0, -2.5]),  # ties, as at a leaky ReLU's kink or in counts
    )
    a = draw(hnp.arrays(np.float32, (n, n_neurons), elements=values))
    constant = draw(st.lists(st.booleans(), min_size=n_neurons, max_size=n_neurons))
    a[:, constant] = a[0, constant]
    return a


@st.composite
def edit_cases(draw):
    d = draw(st.integers(1, 4))
    source, target = draw(activations(d)), draw(activations(d))
    weights = st.floats(2.0**-10, 2.0**10, width=32)
    s_w = draw(st.none() | hnp.arrays(np.float32, len(source), elements=weights))
    t_w = draw(st.none() | hnp.arrays(np.float32, len(target), elements=weights))
    edit = fit_quantile_edit(
        torch.from_numpy(source), torch.from_numpy(target),
        n_quantiles=draw(st.integers(2, 120)),
        source_weights=None if s_w is None else torch.from_numpy(s_w),
        target_weights=None if t_w is None else torch.from_numpy(t_w),
    )
    probe = draw(hnp.arrays(np.float32, (draw(st.integers(1, 30)), d),
                            elements=st.floats(-2.0**100, 2.0**100, width=32)))
    return edit, torch.from_numpy(probe)


def _rounding(edit, *values):
    """Float32 rounding of ``a + shift(a)``: the shift interpolates ``t - s`` (its size
    bounded per neuron by ``M``) and is added to ``a``, so results are exact up to a
    few ulps of ``|a| + M``. (The identity edit is exact: its shift is exactly 0.)"""
    M = (edit.target_knots - edit.source_knots).abs().max(0).values
    return 8 * EPS * (sum(v.abs() for v in values) + M)


def _probe_grid(edit, probe):
    """The probes, every knot, its float neighbours and far-away values, sorted per neuron."""
    knots = edit.source_knots
    grid = torch.cat([
        probe, knots, torch.nextafter(knots, torch.tensor(-np.inf)),
        torch.nextafter(knots, torch.tensor(np.inf)),
        torch.tensor([[-1e30], [-1e6], [1e6], [1e30]]).expand(-1, edit.n_neurons),
    ])
    return grid.sort(dim=0).values


@MATH
@given(edit_cases())
def test_edit_is_monotone_per_neuron(case):
    edit, probe = case
    grid = _probe_grid(edit, probe)
    out = edit.apply(grid)
    # non-decreasing up to float32 rounding
    assert (torch.diff(out, dim=0) >= -_rounding(edit, grid[1:], grid[:-1])).all()


@MATH
@given(edit_cases())
def test_edit_output_is_finite_and_constant_shift_outside(case):
    edit, probe = case
    out = edit.apply(probe)
    assert torch.isfinite(out).all()
    src, tgt = edit.source_knots, edit.target_knots
    below, above = probe < src[0], probe > src[-1]
    # outside the source range the end shift is held, also when end knots are tied
    shift = edit.shift(probe)
    lo, hi = (tgt[0] - src[0]).expand_as(shift), (tgt[-1] - src[-1]).expand_as(shift)
    torch.testing.assert_close(shift[below], lo[below], rtol=0, atol=0)
    torch.testing.assert_close(shift[above], hi[above], rtol=1e-6, atol=1e-6)


@MATH
@given(edit_cases())
def test_source_knot_maps_to_its_target_knot(case):
    edit, _ = case
    src, tgt = edit.source_knots, edit.target_knots
    out = edit.apply(src)
    # A knot tied with others maps to the target of the last of them (the value on
    # the right of the tie); an untied knot maps exactly to its own target knot.
    k = src.shape[0]
    last = torch.searchsorted(src.T.contiguous(), src.T.contiguous(), right=True).T - 1
    expected = torch.gather(tgt, 0, last.clamp(0, k - 1))
    tol = _rounding(edit, src)
    assert ((out - expected).abs() <= tol).all()
    untied = torch.ones_like(src, dtype=torch.bool)
    untied[1:] &= src[1:] != src[:-1]
    untied[:-1] &= src[:-1] != src[1:]
    assert ((out - tgt).abs()[untied] <= tol[untied]).all()


@MATH
@given(st.integers(1, 4).flatmap(activations), st.integers(2, 120), st.randoms())
def test_same_distribution_is_the_identity(source, n_quantiles, random):
    s = torch.from_numpy(source)
    perm = list(range(len(s)))
    random.shuffle(perm)
    edit = fit_quantile_edit(s, s[perm], n_quantiles=n_quantiles)  # same cells, another order
    probe = torch.cat([s, s * 3 - 1, torch.tensor([[-1e30], [1e30]]).expand(-1, s.shape[1])])
    assert torch.equal(edit.apply(probe), probe)
    w = torch.rand(len(s), generator=torch.Generator().manual_seed(random.randint(0, 99))) + 0.1
    weighted = fit_quantile_edit(s, s.clone(), n_quantiles=n_quantiles, source_weights=w,
                                 target_weights=w.clone())
    assert torch.equal(weighted.apply(probe), probe)


@MATH
@given(st.integers(1, 3).flatmap(activations),
       hnp.arrays(np.float32, st.integers(1, 30), elements=st.floats(0, 1, width=32)),
       st.floats(1e-3, 1e3), st.data())
def test_weighted_quantiles_bounded_monotone_and_scale_free(values, probs, c, data):
    v = torch.from_numpy(values)
    w = torch.from_numpy(data.draw(hnp.arrays(np.float32, len(values),
                                              elements=st.floats(2.0**-10, 2.0**10, width=32))))
    p = torch.from_numpy(np.sort(probs))
    q = weighted_quantiles(v, p, w)
    assert q.shape == (len(p), v.shape[1]) and torch.isfinite(q).all()
    assert (q >= v.min(0).values).all() and (q <= v.max(0).values).all()
    assert (torch.diff(q, dim=0) >= 0).all()
    span = (v.max(0).values - v.min(0).values).clamp(min=1.0)
    assert ((weighted_quantiles(v, p, w * c) - q).abs() <= 1e-4 * span).all()


@MATH
@given(st.integers(1, 3).flatmap(activations), st.randoms(), st.data())
def test_weighted_quantiles_do_not_depend_on_cell_order(values, random, data):
    v = torch.from_numpy(values)
    w = torch.from_numpy(data.draw(hnp.arrays(np.float32, len(values),
                                              elements=st.sampled_from([0.5, 1.0, 3.0]))))
    perm = list(range(len(v)))
    random.shuffle(perm)
    p = torch.linspace(0, 1, 23)
    assert torch.equal(weighted_quantiles(v[perm], p, w[perm]), weighted_quantiles(v, p, w))


def test_bad_weights_are_rejected():
    v, p = torch.randn(5, 2), torch.tensor([0.0, 0.5, 1.0])
    for w in (torch.zeros(5), -torch.ones(5), torch.tensor([1.0, 1, 1, 1, float("nan")]),
              torch.ones(4)):
        with pytest.raises(ValueError, match="weights must be 5 finite, non-negative"):
            weighted_quantiles(v, p, w)


# ------------------------------------------------------------- AnnData API

TINY = dict(max_epochs=1, progress=False, device="cpu", model_kwargs=dict(hidden=(4,), n_latent=2),
            train_kwargs=dict(batch_size=16))
API = settings(max_examples=15, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DOCUMENTED_ERRORS = (ValueError, KeyError, TypeError)
CONDITIONS, GROUPS = ["ctrl", "stim", "other"], ["g0", "g1", "g2", "g3"]


@st.composite
def small_adata(draw, min_obs=30, max_obs=80):
    n_obs, n_vars = draw(st.integers(min_obs, max_obs)), draw(st.integers(5, 12))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    X = rng.poisson(2.0, size=(n_obs, n_vars)).astype(np.float32)
    kind = draw(st.sampled_from(["dense", "csr", "float64", "int"]))
    X = {"dense": X, "csr": sparse.csr_matrix(X), "float64": X.astype(np.float64),
         "int": X.astype(np.int64)}[kind]
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n_obs)])
    # categories may be unused, and a group may be missing from a condition
    present = CONDITIONS[:2] if draw(st.booleans()) else CONDITIONS  # "other": maybe unused
    obs["condition"] = pd.Categorical(rng.choice(present, n_obs), categories=CONDITIONS)
    obs["group"] = pd.Categorical(rng.choice(GROUPS[: draw(st.integers(2, 4))], n_obs))
    obs["reference"] = rng.random(n_obs) < draw(st.floats(0, 1))
    obs["score"] = rng.normal(size=n_obs)
    var = pd.DataFrame({"hv": rng.random(n_vars) < 0.7}, index=[f"g{j}" for j in range(n_vars)])
    adata = ad.AnnData(X, obs=obs, var=var)
    adata.layers["counts"] = X.copy()
    adata.obsm["X_pca"] = rng.normal(size=(n_obs, 2))
    adata.uns["existing"] = {"a": 1, "b": np.arange(3), "df": pd.DataFrame({"x": [1.0, 2.0]})}
    return adata


def choose(draw, fault, name, valid, invalid):
    """A valid value for option ``name``, or an invalid one when ``name`` is the fault."""
    return draw(st.sampled_from(invalid if fault == name else valid))


@st.composite
def selections(draw, adata, fault=None):
    """A selection: a dict (values may be absent from the data) or a boolean mask
    (possibly empty); a wrong one when ``fault == "selection"``."""
    if fault == "selection":
        return draw(st.sampled_from([{"cell_type": "ctrl"}, {"condition": "nope"}, {},
                                     np.ones(adata.n_obs + 1, bool), "ctrl", 1.5]))
    kind = draw(st.sampled_from(["condition", "mask", "condition", "both", "empty"]))
    conds = st.sampled_from(CONDITIONS)
    if kind == "condition":
        return {"condition": draw(conds | st.lists(conds, min_size=1, max_size=3))}
    if kind == "both":
        return {"condition": draw(conds), "group": draw(st.sampled_from(GROUPS[:2]))}
    if kind == "empty":
        return np.zeros(adata.n_obs, bool)
    return np.random.default_rng(draw(st.integers(0, 2**16))).random(adata.n_obs) < 0.6


FAULTS = ["selection", "layer", "mask_var", "key", "decode", "groupby"]
#: Half the runs of each test use valid options (selections may still select too few
#: cells), half break one option; hypothesis alone would draw too few valid runs.
FAULTY = pytest.mark.parametrize("faulty", [False, True], ids=["valid", "faulty"])


def draw_fault(draw, faulty):
    """The option a faulty run breaks (one of :data:`FAULTS`), ``None`` in a valid run."""
    return draw(st.sampled_from(FAULTS), label="fault") if faulty else None


def common_options(draw, fault):
    return dict(
        layer=choose(draw, fault, "layer", [None, "counts"], ["missing", 3]),
        mask_var=choose(draw, fault, "mask_var", [None, "hv", ["g0", "g1", "g2"]],
                        ["missing", ["zz"], "score_bool", np.zeros(3, bool)]),
        decode=choose(draw, fault, "decode", ["edited_residual", "residual", "plain"], ["bogus"]),
        n_quantiles=draw(st.sampled_from([2, 10, 100])),
        random_state=draw(st.integers(0, 3)),
    )


def check_outcome(adata, call, *, key, inplace=True):
    """``call()`` either writes the documented keys, or raises a documented error
    with a message and leaves ``adata`` exactly as it was."""
    before = snapshot(adata)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # edit extrapolates: expected here
            out = call()
    except DOCUMENTED_ERRORS as err:
        assert str(err).strip("'\" "), f"{type(err).__name__} without a message"
        event(f"raised {type(err).__name__}: {str(err)[:40]}")
        assert_unchanged(adata, before)
        return None
    event("result")
    if not inplace:
        assert isinstance(out, ad.AnnData) and key in out.uns and "params" in out.uns[key]
        assert np.isfinite(out.X).all()
        assert_unchanged(adata, before)  # inplace=False writes nothing
        return out
    assert out is None
    layer = adata.layers[key]
    edited = adata.obs[f"{key}_edited"].to_numpy()
    assert edited.dtype == bool and edited.any()
    assert "params" in adata.uns[key]
    dense = layer.toarray() if sparse.issparse(layer) else layer
    assert dense.shape == adata.shape and np.isfinite(dense).all()
    params = adata.uns[key]["params"]
    X_in = before["X"] if "layer" not in params else before["layers"][params["layer"]]
    np.testing.assert_array_equal(dense[~edited], X_in[~edited])  # other rows keep their input
    now = snapshot(adata)  # and nothing but the three results was written
    assert_same({k: v for k, v in now["layers"].items() if k != key},
                {k: v for k, v in before["layers"].items() if k != key})
    assert_same({k: v for k, v in now["uns"].items() if k != key},
                {k: v for k, v in before["uns"].items() if k != key})
    assert_same(now["obs"].drop(columns=f"{key}_edited"),
                before["obs"].drop(columns=f"{key}_edited", errors="ignore"))
    for part in ("X", "var", "obsm"):
        assert_same(now[part], before[part], part)
    return None


@FAULTY
@API
@given(data=st.data())
def test_neuron_edit_writes_keys_or_raises_cleanly(faulty, data):
    adata = data.draw(small_adata())
    fault = draw_fault(data.draw, faulty)
    sel = {name: data.draw(selections(adata, fault), label=name)
           for name in ("source", "target", "apply_to")}
    opts = common_options(data.draw, fault)
    key = choose(data.draw, fault, "key", ["neuron_edit", "edit2"], ["", None, opts["layer"] or "x"])
    if fault == "key" and key == "x":
        adata.layers["x"] = adata.X.copy()
        opts["layer"] = "x"
    inplace = data.draw(st.booleans())
    groupby = choose(data.draw, fault, "groupby", [None, "group"], ["missing", ["g0"]])
    check_outcome(adata, lambda: sne.tl.neuron_edit(
        adata, sel["source"], sel["target"], apply_to=sel["apply_to"], groupby=groupby,
        key_added=key, inplace=inplace, **opts, **TINY), key=key, inplace=inplace)


@FAULTY
@API
@given(data=st.data())
def test_predict_perturbation_writes_keys_or_raises_cleanly(faulty, data):
    adata = data.draw(small_adata(60, 150))
    fault = draw_fault(data.draw, faulty)
    opts = common_options(data.draw, fault)
    groups = st.sampled_from(GROUPS)
    inplace = data.draw(st.booleans())
    conditions = choose(data.draw, fault, "selection", [("ctrl", "stim"), ("stim", "ctrl"),
                        ("ctrl", "other")], [("ctrl", "ctrl"), ("ctrl", "nope"), ("x", "stim")])
    check_outcome(adata, lambda: sne.tl.predict_perturbation(
        adata, choose(data.draw, fault, "key", ["condition"], ["nope", "score"]),
        control=conditions[0], perturbed=conditions[1],
        groupby=choose(data.draw, fault, "groupby", ["group"], ["missing", "condition"]),
        predict_for=data.draw(groups | st.lists(groups, min_size=1, max_size=2)),
        balance=data.draw(st.booleans()), inplace=inplace, **opts, **TINY,
    ), key="predicted_perturbation", inplace=inplace)


@FAULTY
@API
@given(data=st.data())
def test_batch_correct_writes_keys_or_raises_cleanly(faulty, data):
    adata = data.draw(small_adata())
    fault = draw_fault(data.draw, faulty)
    opts = common_options(data.draw, fault)
    check_outcome(adata, lambda: sne.tl.batch_correct(
        adata, choose(data.draw, fault, "groupby", ["group", "condition"], ["nope"]),
        reference_key=choose(data.draw, fault, "key", ["reference"], ["nope"]),
        reference_value=choose(data.draw, fault, "selection", [True, False], ["x"]),
        reference_batch=data.draw(st.sampled_from([None, None, "g0", "ctrl", "zz"])),
        min_reference_cells=data.draw(st.integers(1, 8)),
        calibrate=data.draw(st.booleans()),
        nonnegative=data.draw(st.sampled_from(["clip", "keep_zeros", "off"])), **opts, **TINY,
    ), key="batch_corrected")


@MATH
@given(edit_cases(), st.integers(1, 64))
def test_compiled_residual_edit_equals_the_searched_edit(case, n_bins):
    # The compiled kernel that CPU prediction uses must be the same function as
    # QuantileEdit.apply, at the knots, beside them, between them and far outside,
    # with few bins (many knots per bin) and many.
    edit, probe = case
    grid = _probe_grid(edit, probe)
    src, tgt = edit.source_knots, edit.target_knots
    tables = _kernels.knot_tables(src.numpy(), (tgt - src).numpy(), n_bins=n_bins)
    values = np.ascontiguousarray(grid.T.numpy())
    out = np.zeros_like(values)
    _kernels.edited_residual(values, np.zeros_like(values), out, tables)
    reference = edit.apply(grid)
    assert ((torch.from_numpy(out.T) - reference).abs() <= _rounding(edit, grid)).all()
