from __future__ import annotations

from pathlib import Path

from ._fetch import cached, download

FILENAME = "kang_pbmc_valid.h5ad"
URL = (
    "https://raw.githubusercontent.com/theislab/scgen/"
    "dd7e178f9b42b9dfef9eb18d0da4b8e3caea4cf7/data/valid.h5ad"
)
SHA256 = "83f89f5356a4c01f65bbcee225eb45d8d8b13b6c962724431a26c1bf568ff09e"


def kang():
    """Kang et al. (2018) PBMCs, control and interferon-β stimulated (scGen's validation split).

    1,975 cells x 6,998 genes; ``X`` is log1p of size-normalised counts (do
    not log again). ``obs['condition']``: control / stimulated;
    ``obs['cell_type']``: 7 types. Data: GEO GSE96583; split: Lotfollahi et
    al. (2019), scGen.

    Returns
    -------
    :class:`~anndata.AnnData`
    """
    return cached(FILENAME, _build)


def convert(upstream):
    """Keep condition, cell type and expression; drop embeddings and graphs."""
    import anndata as ad

    out = ad.AnnData(
        X=upstream.X.astype("float32"),
        obs=upstream.obs[["condition", "cell_type"]].copy(),
        var=upstream.var.iloc[:, :0].copy(),
    )
    out.uns["provenance"] = {
        "dataset": "Kang et al. 2018 PBMC IFN-beta, scGen validation split",
        "source": URL,
        "value_scale": "log1p of size-normalised counts",
    }
    return out


def _build(dest: Path) -> None:
    import warnings

    import anndata as ad

    raw = download(URL, SHA256, dest.with_suffix(".upstream.h5ad"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the 2018 file's old layout
        convert(ad.read_h5ad(raw)).write_h5ad(dest, compression="gzip")
    raw.unlink()
