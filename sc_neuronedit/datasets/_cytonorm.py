from __future__ import annotations

import os
import re
from pathlib import Path

from ._fetch import Upstream, cached

FILENAME = "cytonorm_gates.h5ad"
_CYTONORM = "https://raw.githubusercontent.com/saeyslab/CytoNorm/{commit}/inst/extdata/{file}"
_HEAD = "b1046ac76d4873acdcc82e92003e8eb919ebdd01"
_OLD = "73114c215fec52ca2b861b93ccfd6ba86b361453"  # PTLG026 was removed from the package after it
_FILES = {  # file -> (commit, sha256)
    "Gates_PTLG021_Unstim_Control_1.fcs":
        (_HEAD, "852c6c346168e4e39e7d990729d41aa6cd53d0794debeb73bc396292678f58b8"),
    "Gates_PTLG021_Unstim_Control_2.fcs":
        (_HEAD, "53e2e57ef6a2c376ab43ce18b096e16d3043b1ea48c6a990b4fb2d08b6166bcd"),
    "Gates_PTLG026_Unstim_Control_1.fcs":
        (_OLD, "e5b97008a47252d311931d2de48483522947a158d8701b8b7aa8889ee7ead01a"),
    "Gates_PTLG026_Unstim_Control_2.fcs":
        (_OLD, "4a13f4e7b8dae6c1fa17cdd67255946e0f45a4c3f715e3c9d21c3588b44d96d0"),
    "Gates_PTLG028_Unstim_Control_1.fcs":
        (_HEAD, "78b8d9afab4e79e72b6efe8c4f4e50e452ec82936481de1b7056b2f11d88dcb1"),
    "Gates_PTLG028_Unstim_Control_2.fcs":
        (_HEAD, "d299ad706a5d643b2bc3ac4b49899a76b7cd2f6bc214a1fe6c1f4aada14b04f4"),
    "Gates_PTLG034_Unstim_Control_1.fcs":
        (_HEAD, "413a942f6fd62a0743c65fd3b3cbe5f5952771bfefcfa898f6a5dfa54ca59d43"),
    "Gates_PTLG034_Unstim_Control_2.fcs":
        (_HEAD, "2b7c0a98b1ac11f9198a1e04f6193383226c92e9ac396fc393a6bf36b9a185cd"),
}
UPSTREAM = tuple(
    Upstream(f"cytonorm_gates/{file}", _CYTONORM.format(commit=commit, file=file), digest)
    for file, (commit, digest) in _FILES.items()
)

PROVENANCE = {
    "aliquot_meaning": "file suffix _1/_2. CytoNorm README: files _1 (Volunteer 1) are the "
                       "training/reference control, files _2 (Volunteer 2) the validation sample",
    "dataset": "CytoNorm example data: CyTOF of unstimulated (Unstim) blood control samples from the "
               "'Gates' study, 4 batches (PTLG021/026/028/034), 2 control files per batch, first 1000 "
               "cells of each original file",
    "license": "GPL (>= 2) (CytoNorm DESCRIPTION). Original full files: FlowRepository FR-FCM-Z247",
    "processing": "8 FCS files concatenated; var_names = $PnN; var.marker = $PnS ('' when "
                  "absent/blank); all 55 parameters kept incl. Time, Event_length, beadDist",
    "publication": "Van Gassen S et al. (2020) CytoNorm: a normalization algorithm for cytometry data. "
                   "Cytometry A 97:268-278",
    "source_blob": "Gates_PTLG021_Unstim_Control_1.fcs=3e238b9d2c853357b4554fb038a169a9148e7b06; "
                   "Gates_PTLG021_Unstim_Control_2.fcs=452a169c9eeb144ca6fb7d260e52de2369aabf85; "
                   "Gates_PTLG026_Unstim_Control_1.fcs=3e6f47059bc14cfde147acdc404414fbb24a48b0; "
                   "Gates_PTLG026_Unstim_Control_2.fcs=24d77e4234730ace5b35e3b188106b4c51a5b9d2; "
                   "Gates_PTLG028_Unstim_Control_1.fcs=b1b993cccbc43f86e902eb98c1d1fb24cb5275d7; "
                   "Gates_PTLG028_Unstim_Control_2.fcs=0951fd3943da0370a7527876ae9f3e069174a014; "
                   "Gates_PTLG034_Unstim_Control_1.fcs=ce69cf21240165fec217f40fefde14573c2ed05a; "
                   "Gates_PTLG034_Unstim_Control_2.fcs=e58cc19b476e2ce90124308cb7b6eef3b84d0701",
    "source_commit": "b1046ac76d4873acdcc82e92003e8eb919ebdd01 (PTLG021, PTLG028, PTLG034); "
                     "73114c215fec52ca2b861b93ccfd6ba86b361453 (PTLG026, removed from the package "
                     "2019-08-20)",
    "source_path": "inst/extdata/Gates_PTLG0xx_Unstim_Control_{1,2}.fcs",
    "source_repo": "https://github.com/saeyslab/CytoNorm",
    "value_scale": "X = raw CyTOF intensities as stored in the FCS files (float32, >= 0, not compensated); "
                   "recommended transform arcsinh(x/5) on the *Di mass channels (CytoNorm's cytofTransform)",
}

_NAME = re.compile(r"Gates_(PTLG\d+)_Unstim_Control_([12])\.fcs")


def cytonorm_gates(*, base_url: str | os.PathLike | None = None):
    """CytoNorm's "Gates" CyTOF controls: the same two blood samples in 4 batches.

    8,000 cells x 55 channels: batches PTLG021/026/028/034, each with ``_Control_1``
    (volunteer 1, the reference run in every batch) and ``_Control_2`` (volunteer 2, for
    validation), 1,000 cells per file. The 1,000 cells are all events of the FCS files as
    CytoNorm ships them (its authors kept the first 1,000 cells of each original file;
    full files: FlowRepository FR-FCM-Z247); nothing is subsampled here. ``X`` (dense
    float32) holds the raw values as stored (lossless; transform the ``*Di`` channels
    with ``arcsinh(x / 5)``, leave out ``Time``, ``Event_length`` and ``beadDist``).

    ``var_names`` are channel names ($PnN), ``var['marker']`` the markers ($PnS, ``''``
    if none). ``obs``: ``batch``, ``file_name``, ``aliquot`` (``'1'`` / ``'2'``: the
    volunteer) and ``reference`` (``True`` for ``_Control_1``). No cell-type labels.
    Source, licence (GPL >= 2 host repository) and citation are in ``uns['provenance']``.

    Read from ``data_dir() / 'cytonorm_gates.h5ad'`` when present; otherwise the 8 pinned
    FCS files (1.8 MB) are downloaded, checked (sha256), read with :func:`~sc_neuronedit.read_fcs`
    and written there.

    Parameters
    ----------
    base_url
        Folder, ``file://`` or web address of a mirror holding
        ``cytonorm_gates/Gates_<batch>_Unstim_Control_<1|2>.fcs``; default
        ``$SC_NEURONEDIT_DATA_URL``, else the pinned GitHub URLs.

    Returns
    -------
    :class:`~anndata.AnnData`

    Examples
    --------
    >>> import sc_neuronedit as sne
    >>> adata = sne.datasets.cytonorm_gates()
    >>> adata.shape
    (8000, 55)
    >>> adata.obs["batch"].cat.categories.tolist()
    ['PTLG021', 'PTLG026', 'PTLG028', 'PTLG034']
    >>> int(adata.obs["reference"].sum())
    4000
    """
    return cached(FILENAME, UPSTREAM, convert, base_url)


def _natural_key(text: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def convert(paths: list[Path]):
    """AnnData from the 8 FCS files (in :data:`UPSTREAM` order)."""
    import pandas as pd

    from .._fcs import read_fcs

    adata = read_fcs(paths)
    parts = [_NAME.fullmatch(str(f)) for f in adata.obs["file_name"]]
    if not all(parts):
        raise ValueError("Unexpected CytoNorm file names.")
    batch = [m.group(1) for m in parts]
    aliquot = [m.group(2) for m in parts]
    index = adata.obs.groupby("file_name", observed=True).cumcount().astype(str)
    obs = pd.DataFrame(
        {
            "batch": pd.Categorical(batch, categories=sorted(set(batch))),
            "file_name": adata.obs["file_name"].values,
            "aliquot": pd.Categorical(aliquot, categories=["1", "2"]),
            "reference": [a == "1" for a in aliquot],
        },
        index=[f"{b}_{a}_{i}" for b, a, i in zip(batch, aliquot, index)],
    )
    adata.obs = obs
    markers = adata.var["marker"]
    adata.var["marker"] = pd.Categorical(markers, categories=sorted(set(markers), key=_natural_key))
    del adata.uns["fcs"]  # local temporary paths
    adata.uns["provenance"] = dict(PROVENANCE)
    return adata
