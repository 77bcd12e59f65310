import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import settings

# The same examples on every run, so that CI is reproducible; search with fresh
# random examples locally with HYPOTHESIS_PROFILE=explore.
settings.register_profile("reproducible", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config):
    # CI points SC_NEURONEDIT_DATA_DIR at ../shared/data; default to it locally too.
    if "SC_NEURONEDIT_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
        os.environ["SC_NEURONEDIT_DATA_DIR"] = str(SHARED_DATA)
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def kang():
    import sc_neuronedit as sne

    path = sne.datasets.data_dir() / "kang_pbmc_valid.h5ad"
    if not path.is_file():
        pytest.fail(f"Real test data missing: {path}. Set SC_NEURONEDIT_DATA_DIR to ../shared/data.")
    return sne.datasets.kang()


@pytest.fixture
def toy_adata():
    """Two cell types x two conditions; 'treated' adds +2 to the first 5 genes."""
    rng = np.random.default_rng(0)
    n_per, n_genes = 60, 30
    blocks, obs = [], []
    for ct, offset in (("A", -1.0), ("B", 1.0), ("C", 0.0)):
        for cond in ("control", "treated"):
            x = rng.normal(offset, 0.5, size=(n_per, n_genes))
            if cond == "treated":
                x[:, :5] += 2.0
            blocks.append(x)
            obs += [(ct, cond)] * n_per
    obs = pd.DataFrame(obs, columns=["cell_type", "condition"]).astype("category")
    obs.index = [f"cell{i}" for i in range(len(obs))]
    var = pd.DataFrame(index=[f"g{j}" for j in range(n_genes)])
    var["hv"] = np.arange(n_genes) < 20
    return ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs, var=var)


def _dense(M):
    return M.toarray() if hasattr(M, "toarray") else np.array(M)


def snapshot(adata):
    """Everything a failed call must leave untouched: X, layers, obs, var, uns, obsm."""
    import copy

    return {
        "X": _dense(adata.X),
        "layers": {k: _dense(v) for k, v in adata.layers.items()},
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "uns": copy.deepcopy(dict(adata.uns)),
        "obsm": {k: _dense(v) for k, v in adata.obsm.items()},
    }


def assert_unchanged(adata, snap):
    assert_same(snapshot(adata), snap)


def assert_same(a, b, where="adata"):
    """Deep equality of nested dicts, DataFrames, arrays and scalars (NaN equals NaN).

    Scalars compare by value, so a NumPy scalar equals the Python scalar read
    back from an ``.h5ad`` file.
    """
    if isinstance(a, pd.DataFrame) or isinstance(b, pd.DataFrame):
        assert isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame), where
        pd.testing.assert_frame_equal(a, b, obj=where)
    elif isinstance(a, dict) or isinstance(b, dict):
        assert isinstance(a, dict) and isinstance(b, dict), f"{where}: {type(a)} vs {type(b)}"
        assert sorted(a) == sorted(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (np.ndarray, list, tuple)) or isinstance(b, (np.ndarray, list, tuple)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, f"{where}: shape {a.shape} vs {b.shape}"
        if a.dtype.kind in "OUS" or b.dtype.kind in "OUS":
            assert a.astype(str).tolist() == b.astype(str).tolist(), where
        else:
            assert a.dtype.kind == b.dtype.kind, f"{where}: dtype {a.dtype} vs {b.dtype}"
            np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, (float, np.floating)) and np.isnan(a):
        assert isinstance(b, (float, np.floating)) and np.isnan(b), where
    else:
        assert type(a) is type(b) or (isinstance(a, np.generic) or isinstance(b, np.generic)), \
            f"{where}: {type(a)} vs {type(b)}"
        assert a == b, f"{where}: {a!r} vs {b!r}"
