"""Checks every ``tl`` function runs on its AnnData before any work.

They raise (or warn) with what was wrong and how to fix it, and never modify
``adata``: results are computed first and written last.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .. import _anndata as _ad
from .._matrix import check_finite, in_memory
from .._warn import warn

#: Fewest source or target cells an edit is learned from (quantiles of fewer are mostly ties).
MIN_EDIT_CELLS = 10
#: Rows looked at by the raw-counts heuristic (the first ones: cheap on backed files).
COUNTS_SAMPLE_ROWS = 2000
#: Integer data whose largest value reaches this look like raw counts, not log values.
COUNTS_MIN_MAX = 20


def check_input(adata, *, layer: str | None, key_added: str, writes: str | None = "all"):
    """Run the checks at the edge of a ``tl`` function; return the input matrix.

    - ``key_added`` is a non-empty string, not the input layer (inputs are never
      overwritten); an existing result under it is replaced, with a warning
      (``writes``: ``"all"`` the function writes ``layers``/``obs``/``uns``,
      ``"uns"`` only ``uns``, ``None`` nothing: it returns a new AnnData);
    - the layer exists, and a backed AnnData is not written into;
    - obs and var names are unique (results are matched to cells and genes by name);
    - no NaN or inf (how many, in which cells and features);
    - integer data that look like raw counts give a warning with the fix.

    Warnings point at the user's call.
    """
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added must be a non-empty string, got {key_added!r}.")
    if layer is not None and key_added == layer:
        raise ValueError(f"key_added={key_added!r} equals the input layer; choose another key so "
                         "that the input is not overwritten.")
    X = _ad.get_matrix(adata, layer)
    if writes == "all" and adata.isbacked:
        raise ValueError("adata is opened in backed mode, where a new layer cannot be added without "
                         "loading X whole. Pass inplace=False (returns the predicted cells as a new "
                         "AnnData), or load the data first: adata = adata.to_memory().")
    for axis, names, fix in (("obs", adata.obs_names, "obs_names_make_unique"),
                             ("var", adata.var_names, "var_names_make_unique")):
        if not names.is_unique:
            dup = names[names.duplicated()].unique()
            raise ValueError(f"adata.{axis}_names has {len(dup)} duplicated name(s) "
                             f"({', '.join(map(str, dup[:5]))}{', …' if len(dup) > 5 else ''}); "
                             f"results are matched by name. Run adata.{fix}() first.")
    check_finite(X, what="adata.X" if layer is None else f"adata.layers[{layer!r}]",
                 var_names=adata.var_names, obs_names=adata.obs_names)
    _warn_if_counts(X, "adata.X" if layer is None else f"adata.layers[{layer!r}]")
    existing = [f"layers[{key_added!r}]"] if writes == "all" and key_added in adata.layers else []
    existing += [f"uns[{key_added!r}]"] if writes and key_added in adata.uns else []
    if existing:
        warn(f"adata.{' and adata.'.join(existing)} already exist(s) and will be replaced; "
             "pass another key_added to keep the earlier result.")
    return X


def _warn_if_counts(X, what: str) -> None:
    """Warn when the first rows hold only non-negative integers reaching ``COUNTS_MIN_MAX``."""
    block = in_memory(X[:COUNTS_SAMPLE_ROWS])
    values = block.data if sparse.issparse(block) else np.asarray(block)
    if values.size == 0 or values.min() < 0 or values.max() < COUNTS_MIN_MAX:
        return
    if np.issubdtype(values.dtype, np.integer) or np.array_equal(values, np.round(values)):
        warn(
            f"{what} holds only non-negative whole numbers (up to {values.max():g}): this looks like "
            "raw counts. Neuron editing expects log-normalised values: keep the counts and "
            "normalise with adata.layers['counts'] = adata.X.copy(); sc.pp.normalize_total(adata); "
            "sc.pp.log1p(adata). For cytometry, transform with sne.pp.arcsinh(adata, 5) and pass "
            "layer='arcsinh'. Without cell types for groupby=, cluster and annotate first "
            "(tutorials/05_from_counts_without_labels.ipynb).")


def check_min_cells(counts: dict, minimum: int, *, what: str, fix: str) -> None:
    """Raise when any selection in ``{name: n_cells}`` has fewer than ``minimum`` cells."""
    few = {name: int(n) for name, n in counts.items() if n < minimum}
    if few:
        listed = ", ".join(f"{name}: {n}" for name, n in few.items())
        raise ValueError(f"Too few cells in {what} ({listed}); at least {minimum} are needed. {fix}")
