from __future__ import annotations

import numpy as np
from scipy import sparse

from .. import _anndata as _ad


def arcsinh(adata, cofactor: float = 5.0, *, layer: str | None = None,
            key_added: str | None = "arcsinh", copy: bool = False):
    """Variance-stabilise cytometry intensities: ``arcsinh(x / cofactor)``.

    Parameters
    ----------
    adata
        Annotated data matrix of raw intensities.
    cofactor
        5 for mass cytometry (CyTOF), typically 150 for fluorescence flow.
    layer
        Input layer; default ``adata.X``.
    key_added
        Layer to write; ``None`` overwrites the input (``X`` or ``layer``) in place.
    copy
        Work on and return a copy.

    Returns
    -------
    ``adata.layers[key_added]`` : transformed values (float32), and
    ``adata.uns["arcsinh"]``: ``cofactor`` and ``output`` (the layer written, or
    ``"X"``), which :func:`sc_neuronedit.write_fcs` reads to undo the transform.
    Returns the AnnData if ``copy`` else ``None``.

    Examples
    --------
    >>> import sc_neuronedit as sne
    >>> cytof = sne.datasets.bodenmiller_bcrxl()
    >>> sne.pp.arcsinh(cytof, 5)
    >>> cytof.layers["arcsinh"].dtype
    dtype('float32')
    >>> copy = sne.pp.arcsinh(cytof, 5, key_added=None, copy=True)  # a copy with arcsinh in .X
    """
    if not cofactor > 0:
        raise ValueError(f"cofactor must be positive, got {cofactor}.")
    if key_added is not None and key_added == layer:
        raise ValueError("key_added equals the input layer; pass key_added=None to overwrite it.")
    adata = adata.copy() if copy else adata
    X = _ad.get_matrix(adata, layer)
    if sparse.issparse(X):
        out = X.astype(np.float32, copy=True)
        out.data = np.arcsinh(out.data / cofactor)  # arcsinh(0) = 0 keeps sparsity
    else:
        out = np.arcsinh(np.asarray(X, dtype=np.float32) / cofactor)
    if key_added is not None:
        adata.layers[key_added] = out
    elif layer is None:
        adata.X = out
    else:
        adata.layers[layer] = out
    output = key_added if key_added is not None else (layer if layer is not None else "X")
    adata.uns["arcsinh"] = {"cofactor": float(cofactor), "output": output}
    return adata if copy else None
