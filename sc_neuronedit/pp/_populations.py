from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .. import _anndata as _ad
from .._matrix import check_finite, take_rows

#: Rows assigned to their nearest centroid at once (bounded memory on large or backed data).
ASSIGN_CHUNK = 65_536


def populations(adata, markers, n_clusters: int, *, fit_on=None, layer: str | None = None,
                key_added: str = "population", random_state: int = 0, copy: bool = False):
    """Cell populations by k-means on lineage markers, for edits within populations.

    k-means (scikit-learn, k-means++ with 10 starts) is fitted on the
    ``fit_on`` cells and the ``markers`` only; then every cell, including cells
    never used in the fit, gets the population of its nearest centroid. Pass
    the result as ``population_key`` to the ``tl`` functions.

    Cluster on **lineage (type) markers only**, which the perturbation or
    batch effect does not move, so that a cell and its prediction belong to
    the same population. Never cluster on the markers that are later scored
    or tested: populations made from an outcome make the outcome look
    population-specific. Any other per-cell labels (a manual gating, Leiden
    clusters) can serve as ``population_key`` instead.

    Parameters
    ----------
    adata
        Annotated data matrix, e.g. ``arcsinh``-transformed cytometry.
    markers
        Features to cluster on: a list of var names, a boolean ``.var`` column
        name or a boolean mask over ``.var``.
    n_clusters
        Number of populations (at least 2).
    fit_on
        Cells the centroids are fitted on (``{obs_key: value(s)}`` or a boolean
        mask); default all. Leave out cells that must not inform the model,
        such as the held-out donor's perturbed cells in a benchmark.
    layer
        Layer to cluster; default ``adata.X``. The values are clustered as
        they are (no scaling): transform them first (:func:`arcsinh`).
    key_added
        ``.obs`` column to write (categorical: ``"0"`` is the largest
        population among the ``fit_on`` cells, ``"1"`` the next, ...).
    random_state
        Seed of the k-means starts.
    copy
        Work on and return a copy.

    Returns
    -------
    ``adata.obs[key_added]`` : population per cell; ``adata.uns[key_added]``:
    ``params`` and ``centroids`` (DataFrame, populations x markers). Returns
    the AnnData if ``copy`` else ``None``.

    Examples
    --------
    Populations of the Bodenmiller BCR-XL cells from their 10 type markers:

    >>> import sc_neuronedit as sne
    >>> cytof = sne.datasets.bodenmiller_bcrxl()
    >>> sne.pp.arcsinh(cytof, 5)
    >>> sne.pp.populations(cytof, cytof.var["marker_class"] == "type", 8, layer="arcsinh")
    >>> cytof.obs["population"].cat.categories.tolist()
    ['0', '1', '2', '3', '4', '5', '6', '7']
    >>> centroids = cytof.uns["population"]["centroids"]  # 8 populations x 10 markers
    """
    from scanpy import logging as logg
    from sklearn.cluster import KMeans

    if not isinstance(n_clusters, (int, np.integer)) or n_clusters < 2:
        raise ValueError(f"n_clusters must be an integer of at least 2, got {n_clusters!r}.")
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added must be a non-empty string, got {key_added!r}.")
    features = _ad.resolve_mask_var(adata, markers, name="markers")
    if features is None:
        raise ValueError("markers must name the lineage markers to cluster on, not None.")
    X = _ad.get_matrix(adata, layer)
    fit = (np.ones(adata.n_obs, bool) if fit_on is None
           else _ad.resolve_selection(adata, fit_on, name="fit_on"))
    fit_idx = np.flatnonzero(fit)
    if len(fit_idx) < n_clusters:
        raise ValueError(f"fit_on selects {len(fit_idx)} cells, fewer than n_clusters={n_clusters}.")
    values = take_rows(X, fit_idx)[:, features].astype(np.float64)
    check_finite(values, what="The marker values", var_names=adata.var_names[features])
    start = logg.info(f"k-means populations: {n_clusters} clusters of {len(fit_idx)} cells "
                      f"on {int(features.sum())} markers")
    km = KMeans(n_clusters=n_clusters, n_init=10, random_state=random_state).fit(values)
    # Name clusters by size, so that labels do not depend on k-means' arbitrary order.
    order = np.argsort(-np.bincount(km.labels_, minlength=n_clusters), kind="stable")
    rank = np.empty(n_clusters, dtype=int)
    rank[order] = np.arange(n_clusters)
    labels = np.empty(adata.n_obs, dtype=int)
    for s in range(0, adata.n_obs, ASSIGN_CHUNK):
        block = take_rows(X, np.arange(s, min(s + ASSIGN_CHUNK, adata.n_obs)))[:, features]
        check_finite(block, what="The marker values", var_names=adata.var_names[features])
        labels[s : s + len(block)] = rank[km.predict(block.astype(np.float64))]
    names = [str(i) for i in range(n_clusters)]
    centroids = pd.DataFrame(km.cluster_centers_[order], index=names,
                             columns=np.asarray(adata.var_names[features]).astype(str))
    adata = adata.copy() if copy else adata
    if key_added in adata.obs.columns:
        warnings.warn(f"adata.obs[{key_added!r}] already exists and is replaced; pass another "
                      "key_added to keep it.", UserWarning, stacklevel=2)
    adata.obs[key_added] = pd.Categorical.from_codes(labels, categories=names)
    adata.uns[key_added] = {
        "params": {"markers": centroids.columns.to_numpy(), "n_clusters": int(n_clusters),
                   "layer": layer, "random_state": int(random_state), "n_fit": int(len(fit_idx))},
        "centroids": centroids,
    }
    adata.uns[key_added]["params"] = {k: v for k, v in adata.uns[key_added]["params"].items()
                                      if v is not None}
    logg.info("    finished", time=start, deep=(
        f"added\n    .obs[{key_added!r}], population per cell\n"
        f"    .uns[{key_added!r}], params and centroids"))
    return adata if copy else None
