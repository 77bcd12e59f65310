from __future__ import annotations

import os
from pathlib import Path

from ._fetch import Upstream, cached

FILENAME = "kang_pbmc_valid.h5ad"
UPSTREAM = (
    Upstream(
        "scgen_valid.h5ad",
        "https://raw.githubusercontent.com/theislab/scgen/"
        "dd7e178f9b42b9dfef9eb18d0da4b8e3caea4cf7/data/valid.h5ad",
        "83f89f5356a4c01f65bbcee225eb45d8d8b13b6c962724431a26c1bf568ff09e",
    ),
)
# kept for code that imported them
URL, SHA256 = UPSTREAM[0].url, UPSTREAM[0].sha256

PROVENANCE = {
    "dataset": "Kang et al. 2018 IFN-beta stimulated vs control PBMCs (10x, lupus patients' PBMCs), "
               "scGen validation split",
    "license": "GPL-3.0 (theislab/scgen LICENSE, added 2019-02-22; no licence file at the source commit). "
               "Underlying data: GEO GSE96583",
    "processing": "re-written with current anndata; obs reduced to condition, cell_type; dropped var "
                  "columns, obsm, obsp, uns; X float32",
    "publication": "Kang HM et al. (2018) Multiplexed droplet single-cell RNA-sequencing using natural "
                   "genetic variation. Nat Biotechnol 36:89-94. doi:10.1038/nbt.4042; split from "
                   "Lotfollahi M et al. (2019) scGen, Nat Methods 16:715-721",
    "source_blob": "1c1ac1c706fe2e82e654efbf7ec451f30097ff79",
    "source_commit": "dd7e178f9b42b9dfef9eb18d0da4b8e3caea4cf7",
    "source_path": "data/valid.h5ad",
    "source_repo": "https://github.com/theislab/scgen",
    "value_scale": "X = natural-log log1p of per-cell normalised counts (X = log1p(count * 1832.5 / "
                   "total_counts_of_cell)); NOT raw counts",
}


def kang_pbmc(*, base_url: str | os.PathLike | None = None):
    """Kang et al. (2018) PBMCs, control and interferon-β stimulated (scGen's validation split).

    1,975 cells x 6,998 genes; ``X`` (sparse float32) is log1p of size-normalised counts
    (do not log again). ``obs['condition']``: control / stimulated; ``obs['cell_type']``:
    7 types. Data: GEO GSE96583; split: Lotfollahi et al. (2019), scGen. Source, licence
    (GPL-3.0 host repository) and citation are in ``uns['provenance']``.

    Read from ``data_dir() / 'kang_pbmc_valid.h5ad'`` when present; otherwise the pinned
    scGen file (2 MB) is downloaded, checked (sha256), converted and written there.

    Parameters
    ----------
    base_url
        Folder, ``file://`` or web address of a mirror holding ``scgen_valid.h5ad``;
        default ``$SC_NEURONEDIT_DATA_URL``, else the pinned GitHub URL.

    Returns
    -------
    :class:`~anndata.AnnData`

    Examples
    --------
    >>> import sc_neuronedit as sne
    >>> adata = sne.datasets.kang_pbmc()
    >>> adata.shape
    (1975, 6998)
    >>> adata.obs["condition"].cat.categories.tolist()
    ['control', 'stimulated']
    """
    return cached(FILENAME, UPSTREAM, _convert_files, base_url)


#: Short alias of :func:`kang_pbmc` (used by the CLI, tests and tutorials).
kang = kang_pbmc


def convert(upstream):
    """Keep condition, cell type and expression; drop QC columns, embeddings and graphs."""
    import anndata as ad

    obs = upstream.obs[["condition", "cell_type"]].copy()
    for col in obs:  # the 2018 file stores categories by first appearance; sort them
        obs[col] = obs[col].cat.reorder_categories(sorted(obs[col].cat.categories))
    out = ad.AnnData(X=upstream.X.astype("float32"), obs=obs, var=upstream.var.iloc[:, :0].copy())
    out.uns["provenance"] = dict(PROVENANCE)
    return out


def _convert_files(paths: list[Path]):
    import warnings

    import anndata as ad

    with warnings.catch_warnings():
        # the 2018 file's old layout: anndata reads it, with a warning per element
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", getattr(ad, "OldFormatWarning", PendingDeprecationWarning))
        return convert(ad.read_h5ad(paths[0]))
