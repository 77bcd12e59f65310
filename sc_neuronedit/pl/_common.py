from __future__ import annotations

from pathlib import Path

import numpy as np

#: Resolution of files written with ``save=``.
SAVE_DPI = 150


def result(adata, key: str) -> dict:
    if key not in adata.uns:
        found = [k for k, v in adata.uns.items() if isinstance(v, dict) and "params" in v]
        raise KeyError(
            f"No neuron-editing result at adata.uns[{key!r}]; results found: "
            f"{', '.join(found) or '(none)'}."
        )
    return adata.uns[key]


def panels(ax, n: int, *, ncols: int, panel_size: tuple[float, float], **subplots_kw):
    """The figure and ``n`` axes to draw into: the user's ``ax`` or a new grid.

    ``ax`` may be one Axes (when ``n == 1``) or any array-like of ``n`` Axes,
    so that a multi-panel plot can go into a figure the user laid out. A new
    grid hides the panels it does not need.

    Returns
    -------
    ``(fig, axes, created)`` with ``axes`` an object array of shape ``(n,)``.
    """
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    if ax is None:
        ncols = max(1, min(ncols, n))
        nrows = -(-n // ncols)
        fig, grid = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows),
                                 squeeze=False, **subplots_kw)
        for extra in grid.flat[n:]:
            extra.set_visible(False)
        return fig, grid.ravel()[:n], True
    given = np.asarray([ax] if isinstance(ax, Axes) else ax, dtype=object).ravel()
    if len(given) != n or not all(isinstance(a, Axes) for a in given):
        raise ValueError(f"ax= must be {'one Axes or ' if n == 1 else ''}{n} Axes (one per panel), "
                         f"got {len(given)} item(s); or leave ax=None for a new figure.")
    return given[0].figure, given, False


def save_path(save, name: str) -> Path | None:
    """Where ``save=`` asks to write: a path as given, ``True`` scanpy's figure folder.

    ``True`` gives ``sc.settings.figdir / f"{name}{sc.settings.plot_suffix}.{sc.settings.file_format_figs}"``
    (the folder is created, as scanpy does); ``None`` or ``False``, nothing.
    """
    if save is None or save is False:
        return None
    if save is True:
        import scanpy as sc

        folder = Path(sc.settings.figdir)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}{sc.settings.plot_suffix}.{sc.settings.file_format_figs}"
    if not isinstance(save, (str, Path)):
        raise TypeError(f"save must be a file path, True (scanpy's figdir) or None, got "
                        f"{type(save).__name__}.")
    path = Path(save)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"save={str(save)!r}: the folder {str(path.parent)!r} does not exist.")
    return path


def finish(fig, *, show: bool | None, save, name: str, tight: bool = False):
    """Lay out, save and show ``fig`` like scanpy's plotting functions.

    ``save`` is a file path (the format follows its suffix) or ``True`` (see
    :func:`save_path`; ``name`` is the plot's name there). With ``show=True``
    the figure is shown and ``None`` returned; otherwise the figure is returned.
    """
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    path = save_path(save, name)
    if path is not None:
        fig.savefig(path, dpi=SAVE_DPI, bbox_inches="tight")
    if show:
        plt.show()
        return None
    return fig


#: numpydoc text of the three options every plotting function takes.
COMMON_PARAMS = """ax
        Axes to draw into (one per panel); default a new figure.
    show
        Show the figure (``plt.show()``) and return ``None``; by default the
        figure is returned and Jupyter displays it.
    save
        File path to save the figure to (format from the suffix, e.g. ``.png``,
        ``.pdf``), at 150 dpi; ``True`` writes it to scanpy's
        ``sc.settings.figdir`` as ``<plot name><sc.settings.plot_suffix>.<sc.settings.file_format_figs>``."""


#: numpydoc Returns section of every plotting function.
FIGURE_RETURNS = """Returns
    -------
    The figure, or ``None`` with ``show=True``."""


#: The first lines of the examples that plot a prediction on the Kang data.
KANG_RESULT = """>>> import sc_neuronedit as sne
    >>> adata = sne.datasets.kang_pbmc()
    >>> sne.tl.predict_perturbation(adata, "condition", control="control",
    ...     perturbed="stimulated", groupby="cell_type", predict_for="CD4T")"""


def documented(func):
    """Fill ``{common_params}``, ``{figure_returns}`` and ``{kang_result}`` in ``func``'s
    docstring."""
    func.__doc__ = (func.__doc__.replace("{common_params}", COMMON_PARAMS)
                    .replace("{figure_returns}", FIGURE_RETURNS)
                    .replace("{kang_result}", KANG_RESULT))
    return func
