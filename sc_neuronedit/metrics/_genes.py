from __future__ import annotations

import numpy as np


def top_degs(
    adata, groupby: str, group: str, reference: str, *, n_genes: int = 100, layer: str | None = None
) -> np.ndarray:
    """The ``n_genes`` most up-regulated genes of ``group`` vs ``reference``.

    Wilcoxon scores from :func:`scanpy.tl.rank_genes_groups` on a copy of the
    cells of the two groups (``adata`` is not modified), highest score first.

    Parameters
    ----------
    adata
        Annotated data matrix, e.g. log-normalised expression.
    groupby
        ``.obs`` column holding ``group`` and ``reference``.
    group, reference
        The values of ``groupby`` to compare: ``group`` against ``reference``.
    n_genes
        How many genes to return.
    layer
        Use ``adata.layers[layer]`` instead of ``adata.X``.

    Returns
    -------
    Array of var names.

    Examples
    --------
    >>> import sc_neuronedit as sne
    >>> adata = sne.datasets.kang_pbmc()
    >>> mono = adata[adata.obs["cell_type"] == "CD14+Mono"]
    >>> sne.metrics.top_degs(mono, "condition", "stimulated", "control", n_genes=5)
    array(['ISG15', 'ISG20', 'IFITM3', 'RSAD2', 'APOBEC3A'], dtype=object)
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
