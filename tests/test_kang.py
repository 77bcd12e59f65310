"""End to end on the real Kang PBMC data (few epochs: behaviour, not scores)."""

import numpy as np
import pytest

import sc_neuronedit as sne
from sc_neuronedit import metrics

IFN_GENES = ["ISG15", "IFI6", "IFIT1"]


@pytest.fixture(scope="module")
def predicted(kang):
    adata = kang.copy()
    sne.tl.predict_perturbation(
        adata, "condition", control="control", perturbed="stimulated", groupby="cell_type",
        predict_for="B", max_epochs=4, random_state=0, progress=False,
    )
    return adata


def test_dataset_is_the_documented_one(kang):
    assert kang.shape == (1975, 6998)
    assert kang.obs["condition"].value_counts().to_dict() == {"stimulated": 1039, "control": 936}
    assert set(kang.obs["cell_type"].cat.categories) >= {"B", "CD14+Mono", "CD4T", "NK"}


def test_interferon_genes_go_up_toward_the_truth(predicted):
    a = predicted
    ct, cond = a.obs["cell_type"].to_numpy(), a.obs["condition"].to_numpy()
    ctrl, real = (ct == "B") & (cond == "control"), (ct == "B") & (cond == "stimulated")
    np.testing.assert_array_equal(a.obs["predicted_perturbation_edited"].to_numpy(), ctrl)
    idx = a.var_names.get_indexer(IFN_GENES)
    before = np.asarray(a.X[ctrl][:, idx].mean(0)).ravel()
    after = np.asarray(a.layers["predicted_perturbation"][ctrl][:, idx].mean(0)).ravel()
    truth = np.asarray(a.X[real][:, idx].mean(0)).ravel()
    assert np.all(after > before + 0.5), (before, after, truth)
    assert np.all(np.abs(after - truth) < np.abs(before - truth))


def test_prediction_beats_no_change_on_degs(predicted):
    a = predicted
    ct, cond = a.obs["cell_type"].to_numpy(), a.obs["condition"].to_numpy()
    ctrl, real = (ct == "B") & (cond == "control"), (ct == "B") & (cond == "stimulated")
    degs = a.var_names.get_indexer(metrics.top_degs(a[ct == "B"], "condition", "stimulated", "control"))
    pred = a.layers["predicted_perturbation"][ctrl]
    assert metrics.r2_means(pred, a.X[real], degs) > metrics.r2_means(a.X[ctrl], a.X[real], degs) + 0.2
    e_pred, floor = metrics.pca_energy_distance(pred, a.X[real], a.X[ctrl])
    e_none, _ = metrics.pca_energy_distance(a.X[ctrl], a.X[real], a.X[ctrl])
    assert e_pred < e_none


def test_held_out_stimulated_cells_are_not_used(kang):
    # Removing the held-out type's stimulated cells must not change the prediction.
    full, cut = kang.copy(), kang[~((kang.obs.cell_type == "NK") &
                                     (kang.obs.condition == "stimulated"))].copy()
    kw = dict(control="control", perturbed="stimulated", groupby="cell_type", predict_for="NK",
              max_epochs=2, random_state=1, progress=False, inplace=False)
    a = sne.tl.predict_perturbation(full, "condition", **kw)
    b = sne.tl.predict_perturbation(cut, "condition", **kw)
    np.testing.assert_allclose(a.X, b.X, atol=1e-5)


def test_scanpy_ranks_the_prediction_without_log2_warnings(predicted):
    # Issue 15: decoded values below zero made scanpy's logFC log2 a negative mean (NaN, warned).
    import warnings

    import scanpy as sc

    a = predicted
    ct, cond = a.obs["cell_type"].to_numpy(), a.obs["condition"].to_numpy()
    ctrl = (ct == "B") & (cond == "control")
    pred = a[ctrl].copy()
    pred.X = pred.layers["predicted_perturbation"]
    pred.obs["condition"] = "predicted"
    both = sc.concat([pred, a[ctrl]], index_unique="-")
    assert both.X.min() >= 0
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*log2", category=RuntimeWarning)
        sc.tl.rank_genes_groups(both, "condition", groups=["predicted"], reference="control",
                                method="wilcoxon", n_genes=both.n_vars, use_raw=False)
    logfc = np.asarray(both.uns["rank_genes_groups"]["logfoldchanges"]["predicted"], dtype=float)
    assert np.isfinite(logfc).all()
