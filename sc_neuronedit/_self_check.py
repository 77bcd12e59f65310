"""The self-check: how good is a prediction of an unmeasured condition likely to be?

A prediction for a held-out group (cell type, donor) is learned from other
groups, so leaving each of those out in turn and predicting its real target
cells estimates the error honestly -- as long as no group is scored with an
autoencoder that saw its target cells. Two extra autoencoders, each trained
without the target cells of one half of the groups, score that half's groups
(2 extra fits, not one per group). The input layer needs no autoencoder. Where no
group can be left out, halves of the cells stand in: each batch's reference cells
(:func:`split_half_batches`) and each single drug's cells (:func:`split_half_effects`).

Arrays and models in, tables out: the ``tl`` functions resolve AnnData
selections at their edge and hand in masks, labels and a model factory. The
choice among the candidates is :mod:`sc_neuronedit._self_check_choice`; batch
correction's proxy and rule are :mod:`sc_neuronedit._self_check_batches`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._synergy import subsampled_energy

#: Up to this many features, errors are measured on the features themselves; above, in a PCA.
FEATURE_SPACE_MAX = 60
PCA_COMPONENTS = 50
#: Fewest predicted and real cells for a per-population row.
MIN_POPULATION_ROW_CELLS = 20
MIN_GROUPS = 3


@dataclass(frozen=True)
class Candidate:
    """One way to predict: the edited layer, pooled or within populations."""

    edit_layer: str
    within: bool

    @property
    def name(self) -> str:
        return f"{self.edit_layer}, {'within populations' if self.within else 'pooled'}"


def candidates(with_populations: bool) -> list[Candidate]:
    """Cheapest first: the input layer needs no autoencoder, pooled edits fewer fits."""
    return [Candidate(layer, within) for layer in ("input", "bottleneck")
            for within in ((False, True) if with_populations else (False,))]


def scoring_space(control: np.ndarray, real: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Where errors are measured: the features themselves (small panels), or a PCA of the
    group's real control and target cells (expression), so a prediction cannot shape the
    space it is judged in."""
    if control.shape[1] <= FEATURE_SPACE_MAX:
        return lambda M: M
    ref = np.vstack([control, real]).astype(np.float64)
    mean = ref.mean(axis=0)
    k = min(PCA_COMPONENTS, min(ref.shape) - 1)
    comps = np.linalg.svd(ref - mean, full_matrices=False)[2][:k].T
    return lambda M: (M - mean) @ comps


def errors(pred: np.ndarray, real: np.ndarray, labels, random_state: int = 0) -> dict[str, float]:
    """Energy distance of predicted to real cells, over all cells (``"all"``) and, with
    ``labels = (predicted cells' populations, real cells' populations)``, within each
    population holding at least :data:`MIN_POPULATION_ROW_CELLS` cells on both sides."""
    out = {"all": subsampled_energy(pred, real, random_state=random_state)}
    if labels is not None:
        pop_pred, pop_real = labels
        for p in np.unique(pop_real):
            sel_p, sel_r = pop_pred == p, pop_real == p
            if min(sel_p.sum(), sel_r.sum()) >= MIN_POPULATION_ROW_CELLS:
                out[str(p)] = subsampled_energy(pred[sel_p], real[sel_r], random_state=random_state)
    return out


def with_skill(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``no_change`` (the error of the no-change row of the same group and population)
    and ``skill = 1 - error / no_change``."""
    reference = table[table.candidate == "no change"].set_index(["group", "population"])["error"]
    table["no_change"] = reference.loc[list(zip(table.group, table.population))].to_numpy()
    table["skill"] = 1 - table["error"] / table["no_change"]
    return table


def group_skill(table: pd.DataFrame) -> pd.DataFrame:
    """Skill per group and candidate: over all cells, or with populations the mean of the
    populations' skills, each population weighing the same -- a response confined to a small
    population is what populations are given for, and over all cells it is diluted by the
    large populations and by the features it does not move."""
    rows = table[table.candidate != "no change"]
    by_population = rows[rows.population != "all"]
    use = by_population if len(by_population) else rows[rows.population == "all"]
    return use.groupby(["group", "candidate"], sort=False)[["error", "skill"]].mean().reset_index()


def random_half(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random half (rounded down) of the cells of ``mask``, as a mask."""
    idx = rng.permutation(np.flatnonzero(mask))
    half = np.zeros(len(mask), dtype=bool)
    half[idx[: len(idx) // 2]] = True
    return half


def halves(groups: list[str], random_state: int) -> list[list[str]]:
    """The groups dealt into two halves at random (seeded)."""
    order = np.random.default_rng(random_state).permutation(len(groups))
    return [[groups[i] for i in order[h::2]] for h in (0, 1)]


def leave_one_group_out(
    *,
    rows: Callable[[np.ndarray], np.ndarray],
    source: np.ndarray,
    target: np.ndarray,
    groups: np.ndarray,
    populations: np.ndarray | None,
    make_model: Callable[[str, np.ndarray], object],
    train_mask: np.ndarray,
    learn_options: dict,
    apply_options: dict,
    finish: Callable[[np.ndarray, np.ndarray], None] | None = None,
    random_state: int = 0,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Inner leave-one-group-out error of every candidate, never with a model that saw
    the scored group's target cells.

    Parameters
    ----------
    rows
        Dense values of the model's features for row indices.
    source, target
        Boolean masks of the source and target cells (of the training groups only).
    groups
        Group label per cell (string array over all rows).
    populations
        Population label per cell, or ``None`` (then only pooled candidates).
    make_model
        ``make_model(edit_layer, train_mask)`` returns a trained model on those cells.
    train_mask
        Cells the main model trains on; each extra model leaves out the target cells of
        one half of the groups on top.
    learn_options, apply_options
        Passed to ``learn_edit`` and ``apply_edit`` (decode, n_quantiles, ...).
    finish
        ``finish(values, rows)`` post-processes predicted full-width values in place as
        the prediction itself does (``nonnegative``), so that the check scores the output.

    Returns
    -------
    Long table: ``group``, ``candidate``, ``population`` (``"all"``, or a population's
    label), ``error`` (energy distance to the group's real target cells), ``no_change``
    (the same for its source cells as they are) and ``skill = 1 - error / no_change``.
    """
    both = sorted(set(groups[source]) & set(groups[target]))
    if len(both) < MIN_GROUPS:
        raise ValueError(
            f"The self-check leaves out one group at a time and needs at least {MIN_GROUPS} groups "
            f"with both source and target cells; there are {len(both)} ({', '.join(both) or 'none'}). "
            "Pass self_check=False (and an explicit edit_layer), or add groups.")
    cands = candidates(populations is not None)
    split = halves(both, random_state)
    models = {"input": {h: None for h in (0, 1)}}
    if any(c.edit_layer != "input" for c in cands):
        models["bottleneck"] = {}
        for h, half in enumerate(split):
            if progress:
                progress(f"self-check: autoencoder {h + 1} of 2, without the target cells of "
                         f"{', '.join(half)}")
            unseen = target & np.isin(groups, half)
            models["bottleneck"][h] = make_model("bottleneck", train_mask & ~unseen)
    if models["input"][0] is None:
        model = make_model("input", train_mask)
        models["input"] = {0: model, 1: model}
    cols = model_columns(models["input"][0])
    records = []
    for g in both:
        h = 0 if g in split[0] else 1
        others = np.isin(groups, [x for x in both if x != g])
        src, tgt = source & others, target & others
        apply_rows = np.flatnonzero(source & (groups == g))
        real_rows = np.flatnonzero(target & (groups == g))
        scored = predictions(
            cands, {layer: by_half[h] for layer, by_half in models.items()}, rows, src, tgt,
            apply_rows, cols, groupby=groups, populations=populations, learn_options=learn_options,
            apply_options=apply_options, finish=finish)
        records += scored_records(g, scored, rows(real_rows)[:, cols], populations, apply_rows,
                                  real_rows, random_state)
    return with_skill(pd.DataFrame(records))


def split_half_effects(
    *,
    rows: Callable[[np.ndarray], np.ndarray],
    control: np.ndarray,
    treated: dict[str, np.ndarray],
    populations: np.ndarray | None,
    make_model: Callable[[str, np.ndarray], object],
    train_mask: np.ndarray,
    learn_options: dict,
    apply_options: dict,
    finish: Callable[[np.ndarray, np.ndarray], None] | None = None,
    random_state: int = 0,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """A drug combination's proxy: how well each candidate predicts each single drug's
    effect on cells it did not learn from.

    A combination is predicted by carrying one drug's edit (control -> drug) onto the
    other drug's cells; its ingredient that can be measured is the edit itself. The
    control and each drug's cells are split in half at random: the edit is learned on
    one half and applied to the other half of the control cells, and scored against
    the other half of the drug's cells. The bottleneck candidates use one extra
    autoencoder trained without those held-out drug cells. The proxy is optimistic:
    it cannot see how an edit transfers onto cells that another drug has changed.

    Parameters
    ----------
    rows, populations, make_model, train_mask, learn_options, apply_options, finish
        As in :func:`leave_one_group_out`.
    control
        Boolean mask of the control cells.
    treated
        ``{drug: boolean mask of its cells}``, one entry per single drug.

    Returns
    -------
    Long table as :func:`leave_one_group_out`'s, with one group per drug.
    """
    rng = np.random.default_rng(random_state)

    def halves_of(mask):
        first = random_half(mask, rng)
        return first, mask & ~first

    learn_control, held_control = halves_of(control)
    split = {drug: halves_of(mask) for drug, mask in treated.items()}
    held_out = np.any([held for _, held in split.values()], axis=0)
    if progress:
        progress("self-check: autoencoder 1 of 1, without the held-out half of each drug's cells")
    cands = candidates(populations is not None)
    models = {"input": make_model("input", train_mask),
              "bottleneck": make_model("bottleneck", train_mask & ~held_out)}
    cols = model_columns(models["input"])
    apply_rows = np.flatnonzero(held_control)
    records = []
    for drug, (learn, held) in split.items():
        scored = predictions(cands, models, rows, learn_control, learn, apply_rows, cols,
                             groupby=None, populations=populations, learn_options=learn_options,
                             apply_options=apply_options, finish=finish)
        real_rows = np.flatnonzero(held)
        records += scored_records(drug, scored, rows(real_rows)[:, cols], populations, apply_rows,
                                  real_rows, random_state)
    return with_skill(pd.DataFrame(records))


def predictions(cands, models: dict, rows, source, target, apply_rows, cols, *, groupby,
                populations, learn_options, apply_options, finish) -> dict[str, np.ndarray]:
    """Each candidate's prediction of ``apply_rows`` from the edit ``source -> target``
    (model columns only), and the cells as they are (``"no change"``)."""
    scored = {"no change": rows(apply_rows)[:, cols]}
    for cand in cands:
        model = models[cand.edit_layer]
        pops = populations if cand.within else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # inner fallbacks are expected
            edit = model.learn_edit(source, target, groupby=groupby, populations=pops, **learn_options)
            pred = model.apply_edit(apply_rows, edit, populations=pops, **apply_options)
        if finish is not None:
            finish(pred, apply_rows)
        scored[cand.name] = pred[:, cols]
    return scored


def scored_records(group, scored: dict, real: np.ndarray, populations, apply_rows, real_rows,
                   random_state) -> list[dict]:
    """Rows of the long table: each prediction's error against the real cells, over all
    cells and per population, in the scoring space of the group's own cells."""
    space = scoring_space(scored["no change"], real)
    labels = None if populations is None else (populations[apply_rows], populations[real_rows])
    return [dict(group=group, candidate=name, population=population, error=error)
            for name, pred in scored.items()
            for population, error in errors(space(pred), space(real), labels, random_state).items()]


def model_columns(model) -> np.ndarray:
    """Columns of a full-width prediction that the model edits."""
    cols = model.columns
    return np.arange(model.n_features) if cols is None else cols
