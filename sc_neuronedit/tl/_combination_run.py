"""The combination runner behind :func:`~sc_neuronedit.tl.predict_combination` and
:func:`~sc_neuronedit.tl.synergy`: one trained model, the cells of each condition, the
two routes, and the bootstrap of the whole pipeline that the synergy tests stand on."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from .. import _anndata as _ad
from .._applying import check_decode
from .._learning import RESIDUAL_BINS
from .._matrix import take_rows
from .._synergy import (
    TEST_COLUMNS,
    bliss_excess,
    grouped_statistics,
    holm,
    population_tests,
    subsampled_energy,
    synergy_table,
)
from .._warn import warn
from ._checks import check_input, check_min_cells
from ._pipeline import Pipeline, resolve_populations, trained_model, usable_model
from ._results import warn_outside
from ._self_check import checked_choice, combination_check

#: Fewer cells than this in a condition is an error.
MIN_CELLS = 20
#: Control -> control edits that measure the pipeline's own distortion of each statistic.
IDENTITY_HALVINGS = 4


class CombinationRun:
    """One trained model and the cells of each condition; computes routes and scores."""

    def __init__(self, adata, condition_key, *, control, pairs, measured, layer, mask_var,
                 population_key, edit_layer, key_added, decode, nonnegative, n_quantiles, model,
                 max_epochs, model_kwargs, train_kwargs, device, random_state, progress, writes="all",
                 residual_bins=RESIDUAL_BINS, self_check=False):
        from scanpy import logging as logg

        self.X = check_input(adata, layer=layer, key_added=key_added, writes=writes)
        check_decode(decode)  # before any training
        conditions = _ad.resolve_groups(adata, condition_key, name="condition_key")
        populations = resolve_populations(adata, population_key, groupby=condition_key)
        present = set(conditions.tolist())
        singles = [control, *(d for pair in pairs.values() for d in pair)]
        wanted = singles + (list(pairs) if measured else [])
        missing = [c for c in dict.fromkeys(wanted) if c not in present]
        if missing:
            raise ValueError(f"Conditions not in adata.obs[{condition_key!r}]: {missing}; "
                             f"available: {', '.join(map(str, dict.fromkeys(conditions.tolist())))}.")
        for label, pair in pairs.items():
            if len(pair) != 2 or pair[0] == pair[1] or control in pair:
                raise ValueError(f"Combination {label!r} needs two different drugs other than the "
                                 f"control, got {pair!r}.")
        self.cells = {c: np.flatnonzero(conditions == c) for c in dict.fromkeys(wanted)}
        if populations is not None and "all" in set(populations.tolist()):
            raise ValueError(f"adata.obs[{population_key!r}] has a population named 'all', the "
                             "name of the pooled test in the synergy tables; rename it.")
        self.populations = None if populations is None else {
            c: populations[i] for c, i in self.cells.items()}
        check_min_cells({c: len(i) for c, i in self.cells.items()}, MIN_CELLS, what="the conditions",
                        fix=f"Every condition needs cells of its own in adata.obs[{condition_key!r}].")
        self.adata, self.pairs, self.control = adata, pairs, control
        self.condition_key, self.random_state = condition_key, random_state
        # Scored: the call's features (a given model may see others).
        features = _ad.resolve_mask_var(adata, mask_var)
        self.features = np.ones(adata.n_vars, bool) if features is None else features
        self.start = logg.info(f"neuron editing of {len(pairs)} drug combination(s)")

        def mask(condition):
            out = np.zeros(adata.n_obs, bool)
            out[self.cells[condition]] = True
            return out

        train = np.any([mask(c) for c in dict.fromkeys(singles)], axis=0)
        edit_layer, chosen, self.checked = checked_choice(
            adata, edit_layer=edit_layer, self_check=self_check, model=model, populations=populations,
            check=combination_check, control=mask(control),
            treated={d: mask(d) for d in dict.fromkeys(singles[1:])}, train_mask=train, layer=layer,
            mask_var=mask_var, max_epochs=max_epochs, model_kwargs=model_kwargs,
            train_kwargs=train_kwargs, decode=decode, n_quantiles=n_quantiles,
            residual_bins=residual_bins, nonnegative=nonnegative, device=device,
            random_state=random_state, progress=progress)
        # Edits within populations unless the self-check chose pooled ones; the tests stay per
        # population either way.
        self.within = chosen is not None
        if model is None:
            model = trained_model(adata, cells=train, layer=layer, mask_var=mask_var,
                                  edit_layer=edit_layer, max_epochs=max_epochs,
                                  model_kwargs=model_kwargs, train_kwargs=train_kwargs,
                                  device=device, random_state=random_state, progress=progress)
        else:
            usable_model(model, adata, edit_layer)
        self.model, self.population_key = model, population_key
        self.pipeline = Pipeline(model, self.X, layer=layer, decode=decode, n_quantiles=n_quantiles,
                                 residual_bins=residual_bins, nonnegative=nonnegative,
                                 random_state=random_state)
        self._values, self._effects = {}, {}

    def index(self, condition, idx=None) -> np.ndarray:
        """Rows of ``adata`` of a condition's cells (or of ``idx`` among them)."""
        return self.cells[condition] if idx is None else self.cells[condition][idx]

    def rows(self, condition, idx=None) -> np.ndarray:
        """Full-width values of a condition's cells (or of ``idx`` among them)."""
        return take_rows(self.X, self.index(condition, idx))

    def _edit_onto(self, drug, cells_of, *, picks=None, statistics=False):
        """Edit control -> ``drug`` applied to the cells of ``cells_of`` (with ``statistics``,
        also the edit's statistics on them).

        ``picks`` (condition -> row positions) resamples the cells of each condition.
        """
        pick = {c: None if picks is None else picks[c] for c in (self.control, drug, cells_of)}
        edit = self.pipeline.learn(self.index(self.control, pick[self.control]),
                                   self.index(drug, pick[drug]),
                                   populations=self.edit_labels(self.control, drug, picks=pick))
        return edit, self.pipeline.apply(self.index(cells_of, pick[cells_of]), edit,
                                         self.edit_labels(cells_of, picks=pick),
                                         statistics=statistics)

    def identity_shifts(self, drug_a, drug_b, pops, *, k: int = IDENTITY_HALVINGS) -> np.ndarray:
        """What the pipeline does to cells when nothing should change: ``k`` edits control ->
        control, each learned from one random half of the control cells to the other, applied
        to the cells the routes edit (B's, then A's); each statistic of the edited cells minus
        the cells as they are. ``(k, len(pops), len(STATISTICS), n_features)``."""
        rng = np.random.default_rng([self.random_state, 2])  # a stream of its own
        cells = np.concatenate([self.cells[drug_b], self.cells[drug_a]])
        labels = self.route_labels(drug_a, drug_b)
        before = grouped_statistics(self._scored(take_rows(self.X, cells)), labels, pops)
        n = len(self.cells[self.control])
        out = []
        for _ in range(k):
            order = rng.permutation(n)
            halves = order[: n // 2], order[n // 2:]
            with warnings.catch_warnings():  # a half's population too small: as in the reruns
                warnings.simplefilter("ignore", UserWarning)
                edit = self.pipeline.learn(*(self.index(self.control, h) for h in halves),
                                           populations=tuple(self.labels(self.control)[h]
                                                             for h in halves) if self.within else None)
                after = self._scored(self.pipeline.apply(cells, edit,
                                                         labels if self.within else None))
            out.append(grouped_statistics(after, labels, pops) - before)
        return np.asarray(out)

    def labels(self, *conditions, picks=None):
        """Population labels of a condition's (resampled) cells; a tuple of them for several."""
        if self.populations is None:
            return None
        picks = picks or {}
        out = tuple(self.populations[c] if picks.get(c) is None else self.populations[c][picks[c]]
                    for c in conditions)
        return out if len(out) > 1 else out[0]

    def edit_labels(self, *conditions, picks=None):
        """:meth:`labels` for the edits: ``None`` when they are pooled."""
        return self.labels(*conditions, picks=picks) if self.within else None

    def routes(self, drug_a, drug_b):
        """``[(rows of B cells, A's edit on them), (rows of A cells, B's edit on them)]``."""
        if (drug_a, drug_b) not in self._values:
            out = []
            for drug, other in ((drug_a, drug_b), (drug_b, drug_a)):
                _, (values, stats) = self._edit_onto(drug, other, statistics=True)
                warn_outside(float(stats["outside_fraction"].mean()), f"the {other} cells")
                out.append((self.cells[other], values))
            self._values[drug_a, drug_b] = out
        return self._values[drug_a, drug_b]

    def _scored(self, M):
        return M[:, self.features]

    def effect_size(self, drug_a, drug_b) -> float:
        """Mean energy distance of the single drugs' effects (control vs each drug), the
        unit of the agreement and synergy scores; computed once per pair."""
        if (drug_a, drug_b) not in self._effects:
            ctrl = self._scored(self.rows(self.control))
            self._effects[drug_a, drug_b] = float(np.mean([
                subsampled_energy(ctrl, self._scored(self.rows(d)), random_state=self.random_state)
                for d in (drug_a, drug_b)]))
        return self._effects[drug_a, drug_b]

    def agreement(self, routes, drug_a=None, drug_b=None) -> dict:
        (_, first), (_, second) = routes
        pair = drug_a, drug_b
        if drug_a is None:
            (pair,) = self.pairs.values()
        first, second = self._scored(first), self._scored(second)
        return {
            "route_energy_ratio": subsampled_energy(first, second, random_state=self.random_state)
            / self.effect_size(*pair),
            "mean_difference": first.mean(0) - second.mean(0),
        }

    def synergy_tables(self, *, n_resamples: int, bliss_quantile: float) -> dict:
        if n_resamples < 2:
            raise ValueError(f"n_resamples must be at least 2, got {n_resamples}.")
        rng = np.random.default_rng(self.random_state)
        # The observed cells' resamples from a stream of their own: the pipeline's reruns, and
        # so the pooled tables, stay what they were before the observed quantiles were tested.
        rng_observed = np.random.default_rng([self.random_state, 1])
        names = np.asarray(self.adata.var_names)[self.features]
        tables, summary, tests, excluded = {}, {}, [], []
        for label, (a, b) in self.pairs.items():
            routes = self.routes(a, b)
            predicted = self._scored(np.vstack([v for _, v in routes]))
            observed = self._scored(self.rows(label))
            pops, left_out, cells = self.testable_populations((self.control, a, b, label))
            excluded += [{"combination": label, "population": p, "cells": why}
                         for p, why in left_out.items()]
            predicted_labels = self.route_labels(a, b)
            observed_labels = self.labels(label) if self.populations is not None else None
            replicates, boot_stats, obs_stats = self.bootstrap(
                a, b, observed, observed_labels, pops, n_resamples=n_resamples, rng=rng,
                rng_observed=rng_observed)
            gap = self.agreement(routes, a, b)
            table = synergy_table(observed, predicted, np.asarray(replicates),
                                  gap["mean_difference"], names)
            table["bliss_excess"] = bliss_excess(
                self._scored(self.rows(self.control)), self._scored(self.rows(a)),
                self._scored(self.rows(b)), observed, quantile=bliss_quantile)
            table["route_gap"] = gap["mean_difference"]
            tables[label] = table
            (_, first), (_, second) = routes
            route_gap = (grouped_statistics(self._scored(first), self.labels(b), pops)
                         - grouped_statistics(self._scored(second), self.labels(a), pops))
            family = population_tests(observed, observed_labels, predicted, predicted_labels,
                                      boot_stats, obs_stats, populations=pops, features=names,
                                      route_gap=route_gap,
                                      identity_shifts=self.identity_shifts(a, b, pops),
                                      cells=cells)
            # The pooled mean is the test of the wide tables (its null also holds the routes' gap).
            pooled = (family["population"] == "all") & (family["statistic"] == "mean")
            family.loc[pooled, ["estimate", "se", "pvalue"]] = table[
                ["mean_shift", "se", "pvalue"]].to_numpy()
            # One family per combination: populations x features x statistics, less the
            # quantiles with too few cells beyond them (p NaN: not tested).
            tested = family["pvalue"].notna().to_numpy()
            family["qvalue"] = np.nan
            family.loc[tested, "qvalue"] = stats.false_discovery_control(
                family.loc[tested, "pvalue"].to_numpy())
            family.insert(0, "combination", label)
            tests.append(family)
            summary[label] = {
                "drug_a": a, "drug_b": b, "n_observed": len(observed),
                "n_predicted": len(predicted),
                "energy_score": subsampled_energy(observed, predicted, random_state=self.random_state)
                / self.effect_size(a, b),
                "route_agreement": gap["route_energy_ratio"],
                "pvalue": min(1.0, float(table["pvalue"].min()) * len(table)),
                "family_pvalue": float(holm(family.loc[tested, "pvalue"].to_numpy()).min()),
                "n_tests": int(tested.sum()),
            }
        wide = {col: pd.DataFrame({lab: t[col] for lab, t in tables.items()}).T
                for col in ("mean_shift", "median_shift", "z", "se", "route_gap", "pvalue",
                            "bliss_excess")}
        # Benjamini-Hochberg over every combination and feature at once.
        p = wide["pvalue"].to_numpy()
        wide["qvalue"] = pd.DataFrame(stats.false_discovery_control(p.ravel()).reshape(p.shape),
                                      index=wide["pvalue"].index, columns=wide["pvalue"].columns)
        for df in wide.values():
            df.index.name, df.columns.name = "combination", None
        summary = pd.DataFrame(summary).T
        summary.index.name = "combination"
        summary = summary.astype({"drug_a": str, "drug_b": str, "n_observed": int,
                                  "n_predicted": int, "energy_score": float,
                                  "route_agreement": float, "pvalue": float,
                                  "family_pvalue": float, "n_tests": int})
        tests = pd.concat(tests, ignore_index=True)[list(TEST_COLUMNS)]
        excluded = pd.DataFrame(excluded, columns=["combination", "population", "cells"])
        if len(excluded):
            warn(f"Populations with fewer than {MIN_CELLS} cells in a condition are not tested: "
                 + "; ".join(f"{r.population!r} in {r.combination!r} ({r.cells})"
                             for r in excluded.itertuples()) + ".")
        return {"summary": summary, **wide, "tests": tests, "excluded_populations": excluded}

    def bootstrap(self, a, b, observed, observed_labels, pops, *, n_resamples: int, rng,
                  rng_observed) -> tuple[list, list, list]:
        """``n_resamples`` reruns of the whole pipeline on resampled cells: per rerun, the
        pooled prediction's per-feature mean, the predicted cells' statistics per population,
        and the statistics of a resample of the ``observed`` cells (from ``rng_observed``)."""
        replicates, boot_stats, obs_stats = [], [], []
        for _ in range(n_resamples):
            # Both edits relearned, both routes. The routes share one resample per condition,
            # as the real routes share the cells: their errors are correlated, and independent
            # resamples would halve the variance. Resampled without regard to populations: the
            # composition of the cells varies from sample to sample too, and the pooled ("all")
            # statistics must see it.
            picks = {c: rng.integers(0, len(self.cells[c]), len(self.cells[c]))
                     for c in (self.control, a, b)}
            with warnings.catch_warnings():
                # A rerun whose resample has too few cells of a population falls back to the
                # pooled edit for it, as the real run would have: part of the procedure's
                # variance. Each rerun would repeat the real run's warning with other counts.
                warnings.simplefilter("ignore", UserWarning)
                values = [self._scored(self._edit_onto(d, o, picks=picks)[1])
                          for d, o in ((a, b), (b, a))]
            replicates.append(np.mean([v.mean(0) for v in values], axis=0))
            boot_labels = (None if self.populations is None else
                           np.concatenate([self.labels(o, picks=picks) for o in (b, a)]))
            boot_stats.append(grouped_statistics(np.vstack(values), boot_labels, pops))
            again = rng_observed.integers(0, len(observed), len(observed))
            obs_stats.append(grouped_statistics(
                observed[again], None if observed_labels is None else observed_labels[again],
                pops))
        return replicates, boot_stats, obs_stats

    def testable_populations(self, conditions) -> tuple[list[str], dict[str, str], list[int]]:
        """``["all", populations with enough cells in every condition]``, why the others are
        left out, and the fewest cells each kept one has in any condition (which quantiles
        are tested, see :func:`~sc_neuronedit._synergy.statistics_tested`)."""
        fewest = [min(len(self.cells[c]) for c in conditions)]
        if self.populations is None:
            return ["all"], {}, fewest
        names = sorted(set().union(*(self.populations[c] for c in conditions)))
        kept, left_out = ["all"], {}
        for p in names:
            counts = {c: int(np.sum(self.populations[c] == p)) for c in conditions}
            if min(counts.values()) < MIN_CELLS:
                left_out[p] = ", ".join(f"{c}: {n}" for c, n in counts.items())
            else:
                kept.append(p)
                fewest.append(min(counts.values()))
        return kept, left_out, fewest

    def route_labels(self, drug_a, drug_b):
        """Population labels of the predicted cells, in the order of :meth:`routes`."""
        if self.populations is None:
            return None
        return np.concatenate([self.labels(drug_b), self.labels(drug_a)])

    def uns(self) -> dict:
        return {
            **self.pipeline.record(
                condition_key=self.condition_key, control=self.control,
                combinations={k: list(v) for k, v in self.pairs.items()},
                population_key=self.population_key, within_populations=self.within),
            **({} if self.checked is None else dict(zip(("self_check", "self_check_summary"),
                                                        self.checked))),
        }
