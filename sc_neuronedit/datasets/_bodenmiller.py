from __future__ import annotations

import os
from pathlib import Path

from ._fetch import Upstream, cached

FILENAME = "bodenmiller_bcrxl.h5ad"
_CATALYST = "https://raw.githubusercontent.com/HelenaLC/CATALYST/"
UPSTREAM = (
    Upstream(
        "PBMC_fs.rda",
        _CATALYST + "a0a9d1a52eabc71a83ac0eb37d7d7879676328e0/data/PBMC_fs.rda",
        "5f039cd73da107825a58718fa638b2f1957aea9505465ac65097448d7370cc3c",
    ),
    Upstream(
        "PBMC_md.rda",
        _CATALYST + "a0a9d1a52eabc71a83ac0eb37d7d7879676328e0/data/PBMC_md.rda",
        "f3862416f375db9b6d0ca1128247f70c446be1a31dc0935651f6e501b7b2a4b8",
    ),
    Upstream(  # the later panel: same channel -> antigen map, plus marker_class
        "PBMC_panel.rda",
        _CATALYST + "09c7fe09fc57bf1ce71fa47562642b15a1cf5e4d/data/PBMC_panel.rda",
        "c3d5e897b1571c98b905f93a026c5894a4e5bad4c996e703c3384c51c07dce3a",
    ),
)

PROVENANCE = {
    "dataset": "Bodenmiller et al. 2012 PBMC CyTOF, reference vs BCR/FcR-XL stimulation (30 min), "
               "6 patients; CATALYST example subset",
    "license": "GPL (>=2) (CATALYST DESCRIPTION)",
    "marker_class_source": "data/PBMC_panel.rda at commit 09c7fe09fc57bf1ce71fa47562642b15a1cf5e4d (blob "
                           "96754004a0717fd852d41ccd711d1a27d8bd4d58); same channel->antigen mapping as "
                           "the a0a9d1a5 panel",
    "processing": "12 flowFrames concatenated in flowSet order; metadata from PBMC_md by FILENAME; "
                  "var_names = antigen (panel), var.channel = FCS channel name",
    "publication": "Bodenmiller B et al. (2012) Multiplexed mass cytometry profiling of cellular states "
                   "perturbed by small-molecule regulators. Nat Biotechnol 30:858-867; as used in Nowicka "
                   "M et al. (2017) CyTOF workflow, F1000Research 6:748 and CATALYST (Crowell et al.)",
    "source_blob": "PBMC_fs.rda=14f6c9eae32badd3be69d193b72bbe0fa335b9c5; "
                   "PBMC_md.rda=90930e1ed0fd47f5f01bccb34a88ae7666f392a3; "
                   "PBMC_panel.rda=11ce97239cc663573dcd680a98ce423a352babde",
    "source_commit": "a0a9d1a52eabc71a83ac0eb37d7d7879676328e0",
    "source_path": "data/PBMC_fs.rda; data/PBMC_md.rda; data/PBMC_panel.rda",
    "source_repo": "https://github.com/HelenaLC/CATALYST",
    "value_scale": "X = raw CyTOF intensities (dual counts, float32; can be negative); recommended "
                   "transform arcsinh(x/5)",
}


def bodenmiller_bcrxl(*, base_url: str | os.PathLike | None = None):
    """Bodenmiller et al. (2012) CyTOF of PBMCs: reference vs BCR/FcR cross-linking (BCR-XL).

    16,935 cells x 24 markers from 6 donors, each unstimulated (``Ref``) and 30 min
    BCR-XL stimulated: all events of the 12 flowFrames of CATALYST's ``PBMC_fs``
    (2018 version, the data set of the Nowicka et al. CyTOF workflow). ``X`` (dense
    float32) holds raw intensities (can be negative; transform with ``arcsinh(x / 5)``).

    ``var_names`` are antigens; ``var['channel']`` the FCS channel name and
    ``var['marker_class']`` ``type`` (10 identity markers) or ``state`` (14 phospho
    markers). ``obs``: ``sample_id`` (12), ``condition`` (Ref / BCRXL), ``patient_id``
    (6). No cell-type labels. Source, licence (GPL >= 2 host repository) and citation are
    in ``uns['provenance']``.

    Read from ``data_dir() / 'bodenmiller_bcrxl.h5ad'`` when present; otherwise three
    pinned ``.rda`` files (1.4 MB) are downloaded, checked (sha256), converted (with the
    pure-Python ``rdata`` package; no R needed) and written there.

    Parameters
    ----------
    base_url
        Folder, ``file://`` or web address of a mirror holding ``PBMC_fs.rda``,
        ``PBMC_md.rda`` and ``PBMC_panel.rda``; default ``$SC_NEURONEDIT_DATA_URL``, else
        the pinned GitHub URLs.

    Returns
    -------
    :class:`~anndata.AnnData`

    Examples
    --------
    >>> import sc_neuronedit as sne
    >>> adata = sne.datasets.bodenmiller_bcrxl()
    >>> adata.shape
    (16935, 24)
    >>> adata.obs["condition"].cat.categories.tolist()
    ['Ref', 'BCRXL']
    >>> sne.pp.arcsinh(adata, 5)  # raw intensities -> layers["arcsinh"]
    """
    return cached(FILENAME, UPSTREAM, convert, base_url)


def _read_rda(path: Path, name: str):
    import warnings

    import rdata

    with warnings.catch_warnings():
        # flowSet/flowFrame are S4 classes without a Python constructor: rdata warns and
        # returns their slots as namespaces, which is what is used here
        warnings.simplefilter("ignore", UserWarning)
        return rdata.conversion.convert(rdata.parser.parse_file(path))[name]


def convert(paths: list[Path]):
    """AnnData from the flowSet, sample metadata and panel ``.rda`` files (in that order)."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    fs_path, md_path, panel_path = paths
    flowset = _read_rda(fs_path, "PBMC_fs")
    md = _read_rda(md_path, "PBMC_md")
    panel = _read_rda(panel_path, "PBMC_panel")

    channels = [str(c) for c in flowset.colnames]
    if [str(c) for c in panel["fcs_colname"]] != channels:
        raise ValueError("PBMC_panel does not list the flowSet's channels in its order.")
    md = md.assign(file_name=md["file_name"].astype(str)).set_index("file_name")

    blocks, obs = [], []
    for key in flowset.phenoData.data.index:  # sampleNames: the flowSet's frame order
        frame = flowset.frames[key]
        if [str(c) for c in frame.exprs.coords["dim_1"].values] != channels:
            raise ValueError(f"flowFrame {key} has different channels from the flowSet.")
        x = np.asarray(frame.exprs.values, dtype=np.float32)
        meta = md.loc[str(frame.description["FILENAME"][0])]
        blocks.append(x)
        obs.append(pd.DataFrame(
            {"sample_id": meta["sample_id"], "condition": meta["condition"],
             "patient_id": meta["patient_id"]},
            index=[f"{meta['sample_id']}_{i}" for i in range(len(x))],
        ))
    obs = pd.concat(obs)
    obs["sample_id"] = pd.Categorical(obs["sample_id"], categories=[str(s) for s in md["sample_id"]])
    obs["condition"] = pd.Categorical(obs["condition"], categories=["Ref", "BCRXL"])
    obs["patient_id"] = pd.Categorical(obs["patient_id"], categories=sorted(obs["patient_id"].unique()))

    marker_class = pd.Categorical([str(c) for c in panel["marker_class"]], categories=["type", "state"])
    var = pd.DataFrame({"channel": channels, "marker_class": marker_class},
                       index=pd.Index([str(a) for a in panel["antigen"]]))
    out = ad.AnnData(X=np.concatenate(blocks), obs=obs, var=var)
    out.uns["provenance"] = dict(PROVENANCE)
    return out
