"""Where the data sets live, and how their upstream files are fetched and checked.

Every data set is a converted ``.h5ad`` in :func:`data_dir`. When it is missing, its
upstream files are downloaded from pinned URLs (a fixed commit, so the bytes never
change), checked against their sha256, converted and written there once.

Mirrors: set ``SC_NEURONEDIT_DATA_URL`` (or pass ``base_url=``) to a folder, ``file://``
URL or web address that holds the upstream files under their :class:`Upstream` ``name``
(the layout of ``shared/data/raw``); the pinned URLs are then not used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "SC_NEURONEDIT_DATA_DIR"
URL_ENV_VAR = "SC_NEURONEDIT_DATA_URL"


@dataclass(frozen=True)
class Upstream:
    """One upstream file: its name in a mirror folder, pinned URL and sha256."""

    name: str
    url: str
    sha256: str


def data_dir() -> Path:
    """Folder of the converted data sets: ``$SC_NEURONEDIT_DATA_DIR`` or
    ``~/.cache/sc_neuronedit``.

    The loaders read ``<data_dir()>/<name>.h5ad`` and write it there after a
    download. The variable is read at every call, and a relative path in it is
    resolved against the current working directory at that moment: the folder
    returned is always absolute, so it can be handed on to processes that run
    elsewhere (a notebook kernel starts in the notebook's folder).

    Returns
    -------
    :class:`~pathlib.Path` (which need not exist yet).

    Examples
    --------
    >>> import anndata as ad
    >>> import sc_neuronedit as sne
    >>> path = sne.datasets.data_dir() / "kang_pbmc_valid.h5ad"
    >>> adata = ad.read_h5ad(path) if path.is_file() else sne.datasets.kang_pbmc()
    """
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "sc_neuronedit"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_url(file: Upstream, base_url: str | os.PathLike | None = None) -> str:
    """The address ``file`` is fetched from: ``base_url`` (else ``$SC_NEURONEDIT_DATA_URL``)
    joined with ``file.name``, or the pinned upstream URL when neither is set."""
    base = os.fspath(base_url) if base_url is not None else os.environ.get(URL_ENV_VAR)
    if not base:
        return file.url
    return base.rstrip("/") + "/" + file.name


def _offline_hint(filename: str | None) -> str:
    what = f"the converted file {filename!r}" if filename else "the converted file"
    return (
        f"To work offline, put {what} into {data_dir()} (or set {ENV_VAR} to a folder that "
        f"holds it), or set {URL_ENV_VAR} to a local folder with the upstream files."
    )


def download(url: str, digest: str, dest: Path, *, filename: str | None = None) -> Path:
    """Fetch ``url`` (http(s), ``file://`` or a local path) to ``dest`` and check its sha256.

    ``filename`` names the converted data set, for the offline hint in error messages.
    Nothing is left at ``dest`` when the download fails or the checksum does not match.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    scheme = urllib.parse.urlsplit(url).scheme
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        try:
            if len(scheme) > 1:  # http, https, file, ... (one letter: a Windows drive)
                with urllib.request.urlopen(url, timeout=60) as response:
                    shutil.copyfileobj(response, tmp)
            else:
                with open(url, "rb") as src:
                    shutil.copyfileobj(src, tmp)
        except (OSError, ValueError) as err:
            tmp.close()
            os.unlink(tmp.name)
            raise ConnectionError(f"Could not download {url} ({err}). {_offline_hint(filename)}") from err
    got = sha256(Path(tmp.name))
    if got != digest:
        os.unlink(tmp.name)
        raise OSError(
            f"Checksum mismatch for {url}: expected sha256 {digest}, got {got}. The file is not the "
            f"pinned upstream version (changed, truncated or a wrong mirror); nothing was written. "
            f"{_offline_hint(filename)}"
        )
    os.replace(tmp.name, dest)
    return dest


def cached(
    filename: str,
    files: Sequence[Upstream],
    convert: Callable[[list[Path]], object],
    base_url: str | os.PathLike | None = None,
):
    """Read ``filename`` from :func:`data_dir`; build it first if absent.

    Building downloads ``files`` (checked) into a temporary folder, passes their local
    paths to ``convert`` (which returns an AnnData) and writes the result atomically.
    """
    import anndata as ad

    path = data_dir() / filename
    if not path.is_file():
        # A failed build must not leave behind a folder it made (often a mistyped path).
        made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as tmp:
                local = [
                    download(source_url(f, base_url), f.sha256, Path(tmp) / Path(f.name).name,
                             filename=filename)
                    for f in files
                ]
                adata = convert(local)
                partial = Path(tmp) / filename
                adata.write_h5ad(partial, compression="gzip")
                os.replace(partial, path)
        except BaseException:
            for folder in made:  # deepest first; only while still empty
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise
    return ad.read_h5ad(path)
