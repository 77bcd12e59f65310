"""Read FCS (flow / mass cytometry) files into one AnnData, and write them back.

The parser is FlowIO (https://github.com/whitews/FlowIO): BSD-3-Clause (permissive, like
this package), pure Python with numpy as its only dependency, maintained as the FCS layer
of FlowKit, and it reads FCS 2.0, 3.0 and 3.1 with every $DATATYPE (I, F, D).
"""

from __future__ import annotations

import os
import warnings
from array import array
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

PathLike = str | os.PathLike


def read_fcs(path_or_paths: PathLike | Iterable[PathLike], *, preprocess: bool = False):
    """Read one or many FCS files into one :class:`~anndata.AnnData`.

    Each event is a row; files are stacked in the order given. The files are only read,
    never modified.

    Parameters
    ----------
    path_or_paths
        An FCS file, a folder (all its ``*.fcs`` files, sorted by name) or a list of
        files / folders. All files must have the same channels ($PnN) in the same order.
    preprocess
        ``False`` (default): the values exactly as stored in the files (for float data,
        lossless in float32). ``True``: FlowIO's preprocessing, i.e. gain ($PnG),
        log-amplification ($PnE) and time ($TIMESTEP) scaling.

    Returns
    -------
    :class:`~anndata.AnnData` with

    ``X``
        Event values, dense float32, events x channels.
    ``var_names``
        Channel names ($PnN), e.g. ``'Nd145Di'``.
    ``var['marker']``
        Marker / stain names ($PnS), e.g. ``'CD4'``; ``''`` where a file has none (or a
        blank one). When files disagree, the first non-blank name is kept (with a warning).
    ``obs['file_name']``
        Categorical: the file's name, e.g. ``'donor1.fcs'``.
    ``obs['sample']``
        Categorical: the file name without ``.fcs``, made unique (``-1``, ``-2``, ...)
        when two files share a name.
    ``obs_names``
        ``'<sample>_<i>'``, ``i`` counting events from 0 within each file: unique.
    ``uns['fcs']``
        Per-file path, FCS version and event count.

    Raises
    ------
    FileNotFoundError
        A path does not exist, or a folder holds no ``.fcs`` file.
    ValueError
        A file is not an FCS file or cannot be parsed, no path was given, or the files'
        channels differ.

    Examples
    --------
    >>> import sc_neuronedit as sne
    >>> adata = sne.read_fcs(["batch1.fcs", "batch2.fcs"])  # doctest: +SKIP
    >>> adata.var[["marker"]]  # doctest: +SKIP
    """
    import anndata as ad
    import pandas as pd

    paths = _expand(path_or_paths)
    blocks, names, markers, info = [], None, None, []
    for path in paths:
        flow = _parse(path)
        pnn = list(flow.pnn_labels)
        pns = [s.strip() for s in flow.pns_labels]
        if names is None:
            names, markers = pnn, pns
        elif pnn != names:
            raise ValueError(
                f"{path} has different channels ($PnN) from {paths[0]}: "
                f"{_describe_difference(names, pnn)}. Read such files separately."
            )
        else:
            for j, (have, new) in enumerate(zip(markers, pns)):
                if not have:
                    markers[j] = new
                elif new and new != have:
                    warnings.warn(
                        f"Channel {names[j]!r}: marker {new!r} in {path} differs from {have!r} "
                        f"in an earlier file; keeping {have!r}.", UserWarning, stacklevel=2,
                    )
        values = flow.as_array(preprocess=preprocess)
        blocks.append(np.asarray(values, dtype=np.float32).reshape(flow.event_count, len(pnn)))
        info.append({"path": str(path), "version": str(flow.version), "n_events": int(flow.event_count)})

    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"Channel names ($PnN) are not unique: {dup}.")

    samples = _unique([p.name[:-4] if p.name.lower().endswith(".fcs") else p.stem for p in paths])
    file_names = [p.name for p in paths]
    counts = [len(b) for b in blocks]
    obs = pd.DataFrame(
        {
            "file_name": pd.Categorical(np.repeat(file_names, counts),
                                        categories=list(dict.fromkeys(file_names))),
            "sample": pd.Categorical(np.repeat(samples, counts), categories=samples),
        },
        index=[f"{s}_{i}" for s, n in zip(samples, counts) for i in range(n)],
    )
    var = pd.DataFrame({"marker": markers}, index=pd.Index(names))
    X = np.concatenate(blocks, axis=0) if blocks else np.zeros((0, len(names)), np.float32)
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns["fcs"] = {
        "path": [i["path"] for i in info],
        "version": [i["version"] for i in info],
        "n_events": np.array([i["n_events"] for i in info]),
    }
    return adata


def _expand(path_or_paths) -> list[Path]:
    if isinstance(path_or_paths, str | os.PathLike):
        items = [path_or_paths]
    else:
        items = list(path_or_paths)
    if not items:
        raise ValueError("No FCS file given.")
    paths = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".fcs" and p.is_file())
            if not found:
                raise FileNotFoundError(f"No .fcs file in the folder {path}.")
            paths += found
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"FCS file not found: {path}")
    return paths


def _parse(path: Path):
    import flowio

    with open(path, "rb") as f:
        magic = f.read(6)
    if not magic.startswith(b"FCS"):
        raise ValueError(f"{path} is not an FCS file (its first bytes are {magic!r}, not 'FCS').")
    try:
        return flowio.FlowData(str(path))
    except flowio.exceptions.MultipleDataSetsError as err:
        raise ValueError(
            f"{path} holds several data sets; split it first (flowio.read_multiple_data_sets)."
        ) from err
    except Exception as err:  # flowio raises plain ValueError/KeyError/... on damaged files
        raise ValueError(f"Could not parse the FCS file {path}: {err}") from err


def _unique(names: list[str]) -> list[str]:
    """``names`` with repeats suffixed ``-1``, ``-2``, ... (never clashing with another name)."""
    taken, out = set(names), []
    for name in names:
        if names.count(name) > 1:
            k = 1
            while f"{name}-{k}" in taken:
                k += 1
            name = f"{name}-{k}"
            taken.add(name)
        out.append(name)
    return out


def _describe_difference(a: list[str], b: list[str]) -> str:
    only_a, only_b = [x for x in a if x not in b], [x for x in b if x not in a]
    if not only_a and not only_b:
        return "same channels in a different order"
    return f"missing {only_a}, extra {only_b}"


def write_fcs(adata, path: PathLike, *, layer: str | None = None, sample_key: str | None = "sample",
              cofactor: float | str | None = "auto", overwrite: bool = False) -> list[Path]:
    """Write cells to FCS files, one per sample, with the original channel names.

    The inverse of :func:`read_fcs`: ``var_names`` become $PnN, ``var['marker']``
    (where present and not blank) $PnS, values are float32 ($DATATYPE F). Values
    in arcsinh units (:func:`sc_neuronedit.pp.arcsinh`, or a ``tl`` result
    computed from such a layer, e.g. ``batch_corrected``) are transformed back,
    ``cofactor * sinh(x)``, so that the files hold intensities again, as
    CytoNorm's normalised files do.

    Parameters
    ----------
    adata
        Annotated data matrix, e.g. from :func:`read_fcs`.
    path
        With ``sample_key``, a folder (created if missing) that gets one
        ``<sample>.fcs`` per value of ``adata.obs[sample_key]``; with
        ``sample_key=None``, the one file to write.
    layer
        Layer to write; default ``adata.X``.
    sample_key
        ``.obs`` column naming each cell's sample (:func:`read_fcs` writes
        ``'sample'``), or ``None`` for a single file.
    cofactor
        ``"auto"``: undo the arcsinh when ``layer`` is the output of
        :func:`sc_neuronedit.pp.arcsinh` or a ``tl`` result computed from it
        (read from ``adata.uns``), else write the values as they are. A number:
        undo ``arcsinh(x / cofactor)`` with it. ``None``: write the values as they are.
    overwrite
        Replace existing files; otherwise an existing file is an error and
        nothing is written.

    Returns
    -------
    The paths written, in the order of the samples.

    Examples
    --------
    Batch-correct CyTOF files and write the corrected intensities back:

    >>> import sc_neuronedit as sne
    >>> adata = sne.read_fcs("fcs_folder")  # doctest: +SKIP
    >>> sne.pp.arcsinh(adata, 5)  # doctest: +SKIP
    >>> sne.tl.batch_correct(adata, "batch", reference_key="reference", reference_value=True,
    ...                      layer="arcsinh")  # doctest: +SKIP
    >>> sne.write_fcs(adata, "normalised", layer="batch_corrected")  # doctest: +SKIP
    [PosixPath('normalised/sample1.fcs'), ...]
    """
    import flowio

    from . import _anndata as _ad
    from ._matrix import take_rows

    X = _ad.get_matrix(adata, layer)
    factor = _arcsinh_cofactor(adata, layer) if cofactor == "auto" else cofactor
    if factor is not None and not float(factor) > 0:
        raise ValueError(f"cofactor must be positive, 'auto' or None, got {cofactor!r}.")
    path = Path(path).expanduser()
    if sample_key is None:
        files = {path: np.arange(adata.n_obs)}
    else:
        samples = _ad.resolve_groups(adata, sample_key, name="sample_key")
        files = {}
        for sample in dict.fromkeys(samples.tolist()):
            name = str(sample)
            if not name or "/" in name or os.sep in name or name in (".", ".."):
                raise ValueError(f"adata.obs[{sample_key!r}] value {name!r} cannot be a file name.")
            files[path / f"{name}.fcs"] = np.flatnonzero(samples == sample)
    existing = [str(f) for f in files if f.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{len(existing)} file(s) exist ({', '.join(existing[:3])}); pass "
                              "overwrite=True to replace them.")
    markers = (adata.var["marker"].astype(str).str.strip().tolist() if "marker" in adata.var
               else None)
    if sample_key is not None:
        path.mkdir(parents=True, exist_ok=True)
    for file, rows in files.items():
        values = np.asarray(take_rows(X, rows), dtype=np.float64)
        if factor is not None:
            values = float(factor) * np.sinh(values)
        events = array("f")
        events.frombytes(np.ascontiguousarray(values, dtype=np.float32).tobytes())
        tmp = file.with_name(f".{file.name}.partial")
        try:  # a failure halfway never leaves a truncated FCS file under the real name
            with open(tmp, "wb") as handle:
                flowio.create_fcs(handle, events, list(map(str, adata.var_names)),
                                  opt_channel_names=markers)
            os.replace(tmp, file)
        finally:
            tmp.unlink(missing_ok=True)
    return list(files)


def _arcsinh_cofactor(adata, layer: str | None) -> float | None:
    """The cofactor of :func:`sc_neuronedit.pp.arcsinh` behind ``layer``, or ``None``.

    A ``tl`` result records its input layer in ``uns[key]['params']['layer']``;
    follow those links back to the arcsinh output.
    """
    record = adata.uns.get("arcsinh")
    name, seen = ("X" if layer is None else layer), set()
    while record is not None and name not in seen:
        if name == record.get("output"):
            return float(record["cofactor"])
        seen.add(name)
        result = adata.uns.get(name) if name != "X" else None
        if not isinstance(result, Mapping) or not isinstance(result.get("params"), Mapping):
            return None
        # .uns drops None values: a result without "layer" was computed from X.
        name = result["params"].get("layer") or "X"
    return None
