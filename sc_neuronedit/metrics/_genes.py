from __future__ import annotations

import numpy as np


def top_degs(
    adata, groupby: str, group: str, reference: str, *, n_genes: int = 100, layer: str | None = None
) -> np.ndarray:
    """The ``n_genes`` most up-regulated genes of ``group`` vs ``reference``.

    Wilcoxon scores from :func:`scanpy.tl.rank_genes_groups` on a copy of the
    cells of the two groups (``adata`` is not modified), highest score first.

    Returns
    -------
    Array of var names.
    """
    import scanpy as sc

    mask = adata.obs[groupby].isin([group, reference]).to_numpy()
    sub = adata[mask].copy()
    sub.obs[groupby] = sub.obs[groupby].astype(str).astype("category")
    sc.tl.rank_genes_groups(
        sub, groupby, groups=[group], reference=reference, method="wilcoxon",
        n_genes=n_genes, layer=layer, use_raw=False,
    )
    return np.asarray(sub.uns["rank_genes_groups"]["names"][group])
