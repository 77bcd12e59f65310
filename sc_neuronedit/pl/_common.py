from __future__ import annotations


def result(adata, key: str) -> dict:
    if key not in adata.uns:
        found = [k for k, v in adata.uns.items() if isinstance(v, dict) and "params" in v]
        raise KeyError(
            f"No neuron-editing result at adata.uns[{key!r}]; results found: "
            f"{', '.join(found) or '(none)'}."
        )
    return adata.uns[key]


def new_axes(ax, figsize):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax
