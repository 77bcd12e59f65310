from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

ENV_VAR = "SC_NEURONEDIT_DATA_DIR"


def data_dir() -> Path:
    """Folder of the converted data sets: ``$SC_NEURONEDIT_DATA_DIR`` or
    ``~/.cache/sc_neuronedit``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sc_neuronedit"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, digest: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` and check its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, tmp)
        except OSError as err:
            os.unlink(tmp.name)
            raise ConnectionError(
                f"Could not download {url} ({err}). Without internet access, set "
                f"{ENV_VAR} to a folder that holds the converted file."
            ) from err
    got = sha256(Path(tmp.name))
    if got != digest:
        os.unlink(tmp.name)
        raise OSError(f"Checksum mismatch for {url}: expected {digest}, got {got}.")
    os.replace(tmp.name, dest)
    return dest


def cached(filename: str, build: Callable[[Path], None]):
    """Read ``filename`` from :func:`data_dir`, building it first if absent."""
    import anndata as ad

    path = data_dir() / filename
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        build(path)
    return ad.read_h5ad(path)
