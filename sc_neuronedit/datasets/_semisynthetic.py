"""Semi-synthetic drug combination on real CyTOF cells (Bodenmiller BCR-XL Ref cells).

The effect functions are shared with ``benchmarks/synergy_calibration.py``; they act on
arcsinh(x/5) values and take ``(X, names, pop)``: cells x markers, the marker names (a
:class:`pandas.Index`) and the population of every cell from :func:`populations`.
"""

from __future__ import annotations

import os

import numpy as np

#: The marker the interaction term moves (neither single drug touches it).
INTERACTION = "pPlcg2"
#: Markers each single drug changes (disjoint, so the two drugs commute).
TOUCHED = {"A": ("pS6", "pErk", "pp38"), "B": ("pStat1", "pAkt")}
#: Condition labels of :func:`bcrxl_combination`, in the order of its rows.
CONDITIONS = ("control", "A", "B", "A+B")


def populations(X, names) -> np.ndarray:
    """``"B"`` (CD20 > 3), ``"T"`` (CD3 > 3, CD20 <= 3) or ``"other"`` per cell."""
    cd20, cd3 = X[:, names.get_loc("CD20")], X[:, names.get_loc("CD3")]
    return np.where(cd20 > 3, "B", np.where(cd3 > 3, "T", "other"))


def drug_a(X, names, pop, *, target: str = "B"):
    """Drug A: B cells pS6 += 1.2 tanh(pS6), pErk += 0.8 tanh(2 pErk + 1); all cells pp38 x 1.15.

    ``target`` names the population of ``pop`` that takes the place of the B cells (a
    benchmark design with the single-drug effects elsewhere)."""
    X = X.copy()
    b = pop == target
    s6, erk, p38 = (names.get_loc(m) for m in TOUCHED["A"])
    X[b, s6] += 1.2 * np.tanh(X[b, s6])
    X[b, erk] += 0.8 * np.tanh(2 * X[b, erk] + 1)
    X[:, p38] *= 1.15
    return X


def drug_b(X, names, pop, *, target: str = "T"):
    """Drug B: T cells pStat1 += 1.5 (1 - exp(-(pStat1 + 0.5))); all cells pAkt x 1.3.

    ``target`` names the population of ``pop`` that takes the place of the T cells."""
    X = X.copy()
    t = pop == target
    stat1, akt = (names.get_loc(m) for m in TOUCHED["B"])
    X[t, stat1] += 1.5 * (1 - np.exp(-(X[t, stat1] + 0.5)))
    X[:, akt] *= 1.3
    return X


def combination(X, names, pop, gamma, *, targets: tuple[str, str] = ("B", "T")):
    """A then B, plus the interaction: T cells pPlcg2 += 0.5 gamma.

    ``targets``: the populations of ``pop`` in place of A's B cells and B's T cells (the
    interaction stays in ``pop == "T"``)."""
    X = drug_b(drug_a(X, names, pop, target=targets[0]), names, pop, target=targets[1])
    X[pop == "T", names.get_loc(INTERACTION)] += gamma * 0.5
    return X


def bcrxl_combination(gamma: float = 0.0, *, n_cells: int | None = 1000, random_state: int = 0,
                      base_url: str | os.PathLike | None = None):
    """Semi-synthetic drug combination on the real unstimulated cells of the BCR-XL data.

    **The drugs are simulated**: the cells are real (the 7,137 ``Ref`` cells of
    :func:`bodenmiller_bcrxl`, all 6 patients), the effects are known functions
    applied to them. The Ref cells are dealt at random into four disjoint groups
    of ``n_cells``, ``control``, ``A``, ``B`` and ``A+B``, and each group is
    transformed by its condition. With ``x`` a cell's ``arcsinh(x / 5)`` values
    and its population gated on its (untouched) type markers, B = CD20 > 3,
    T = CD3 > 3 and CD20 <= 3:

    - ``A``: in B cells ``pS6 += 1.2 tanh(pS6)`` and
      ``pErk += 0.8 tanh(2 pErk + 1)``; in all cells ``pp38 *= 1.15``;
    - ``B``: in T cells ``pStat1 += 1.5 (1 - exp(-(pStat1 + 0.5)))``; in all
      cells ``pAkt *= 1.3``;
    - ``A+B``: ``B(A(x))``, then in T cells ``pPlcg2 += 0.5 gamma``.

    The two drugs change disjoint markers, so ``A(B(x)) = B(A(x))``: at
    ``gamma = 0`` the combination is exactly the composition of the single
    effects (no interaction); ``gamma > 0`` adds a synergy on pPlcg2, a marker
    neither drug touches, in T cells only (about a third of the cells, so the
    mean over all cells moves by about ``0.16 gamma``). The same effects drive
    ``benchmarks/synergy_calibration.py``.

    Parameters
    ----------
    gamma
        Strength of the interaction.
    n_cells
        Cells per condition (at most 1,784 = 7,137 // 4); ``None`` for as many
        as fit.
    random_state
        Seed of the random split; the same seed gives the same cells in each
        condition at every ``gamma``.
    base_url
        As in :func:`bodenmiller_bcrxl`.

    Returns
    -------
    :class:`~anndata.AnnData` of ``4 n_cells`` cells x 24 markers. ``X`` holds
    **arcsinh(x/5) values** (float32; the effects are defined on this scale, so
    do not transform again). ``obs``: ``condition`` (``control``, ``A``, ``B``,
    ``A+B``, in this order), ``population`` (``B``, ``T``, ``other``: the gate
    above, which no drug changes), ``patient_id`` and ``sample_id`` of the
    original cell; ``obs_names`` are the original cell names. ``var`` as in
    :func:`bodenmiller_bcrxl`. ``uns['semisynthetic']``: ``gamma``, ``n_cells``,
    ``random_state`` and the formulas; ``uns['provenance']`` of the real data.

    Examples
    --------
    >>> import sc_neuronedit as sne
    >>> adata = sne.datasets.bcrxl_combination(gamma=1.0)
    >>> adata.shape
    (4000, 24)
    >>> adata.obs["condition"].cat.categories.tolist()
    ['control', 'A', 'B', 'A+B']
    """
    import anndata as ad
    import pandas as pd

    from ._bodenmiller import bodenmiller_bcrxl

    full = bodenmiller_bcrxl(base_url=base_url)
    ref = full[full.obs["condition"] == "Ref"]
    names = ref.var_names
    X0 = np.arcsinh(np.asarray(ref.X, dtype=np.float32) / 5)
    most = len(X0) // 4
    n_cells = most if n_cells is None else int(n_cells)
    if not 1 <= n_cells <= most:
        raise ValueError(f"n_cells must be between 1 and {most} (four disjoint groups of "
                         f"{len(X0)} Ref cells), got {n_cells}.")
    groups = np.random.default_rng(random_state).permutation(len(X0))[: 4 * n_cells]
    groups = groups.reshape(4, n_cells)
    pop = populations(X0, names)
    effects = (lambda X, p: X, lambda X, p: drug_a(X, names, p), lambda X, p: drug_b(X, names, p),
               lambda X, p: combination(X, names, p, gamma))
    X = np.vstack([f(X0[g], pop[g]) for f, g in zip(effects, groups)]).astype(np.float32)
    rows = groups.ravel()
    obs = pd.DataFrame({
        "condition": pd.Categorical(np.repeat(CONDITIONS, n_cells), categories=list(CONDITIONS)),
        "population": pd.Categorical(pop[rows], categories=["B", "T", "other"]),
        "patient_id": ref.obs["patient_id"].to_numpy()[rows],
        "sample_id": ref.obs["sample_id"].to_numpy()[rows],
    }, index=ref.obs_names[rows])
    for col in ("patient_id", "sample_id"):
        obs[col] = pd.Categorical(obs[col], categories=ref.obs[col].cat.categories)
    out = ad.AnnData(X, obs=obs, var=ref.var.copy())
    out.uns["semisynthetic"] = {
        "gamma": float(gamma), "n_cells": n_cells, "random_state": random_state,
        "scale": "X = arcsinh(x/5)",
        "A": "B cells: pS6 += 1.2 tanh(pS6), pErk += 0.8 tanh(2 pErk + 1); all cells: pp38 *= 1.15",
        "B": "T cells: pStat1 += 1.5 (1 - exp(-(pStat1 + 0.5))); all cells: pAkt *= 1.3",
        "A+B": "B(A(x)); T cells: pPlcg2 += 0.5 gamma",
        "populations": "B: CD20 > 3; T: CD3 > 3 and CD20 <= 3; other: the rest",
    }
    out.uns["provenance"] = dict(full.uns.get("provenance", {}))
    return out
