import os
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import torch

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


def snapshot(adata):
    """Everything a failed call must leave untouched."""
    X = adata.X.toarray() if hasattr(adata.X, "toarray") else np.array(adata.X)
    return (X, adata.obs.copy(), sorted(adata.layers.keys()), sorted(adata.uns.keys()))


def assert_unchanged(adata, snap):
    X, obs, layers, uns = snap
    now = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    np.testing.assert_array_equal(now, X)
    pd.testing.assert_frame_equal(adata.obs, obs)
    assert sorted(adata.layers.keys()) == layers
    assert sorted(adata.uns.keys()) == uns
