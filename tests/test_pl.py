import warnings

import matplotlib

matplotlib.use("Agg")

import pytest

import sc_neuronedit as sne


@pytest.fixture
def result(toy_adata):
    sne.tl.predict_perturbation(toy_adata, "condition", control="control", perturbed="treated",
                                groupby="cell_type", predict_for="C", max_epochs=3,
                                progress=False, model_kwargs={"hidden": (32,), "n_latent": 8})
    return toy_adata


def test_plots_draw_from_a_result(result):
    import matplotlib.pyplot as plt

    fig = sne.pl.loss(result)
    assert len(fig.axes[0].lines) == 3  # training, validation, kept epoch
    fig = sne.pl.edit_curves(result, n_neurons=4)
    assert sum(ax.get_visible() for ax in fig.axes) == 4
    fig = sne.pl.reg_mean(result, labels=["g0", "g1"], n_degs=5)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0].startswith("control, no change (r² ") and "top 5 DEGs" in legend[2]
    assert [t.get_text() for t in fig.axes[0].texts if t.get_text()] == ["g0", "g1"]
    assert fig.axes[0].get_title().startswith("C: predicted vs observed treated")
    fig = sne.pl.distributions(result, ["g0", "g7"])
    assert len(fig.axes) == 2
    plt.close("all")


def test_plots_name_what_is_missing(result):
    with pytest.raises(KeyError, match="results found: predicted_perturbation"):
        sne.pl.loss(result, key="nope")
    with pytest.raises(KeyError, match="Not in adata.var_names"):
        sne.pl.distributions(result, ["g0", "XYZ"])


@pytest.fixture
def corrected(toy_adata):
    """Batches = conditions; the reference sample = cell type A (a bool column, stored as 'True')."""
    toy_adata.obs["spike_in"] = (toy_adata.obs["cell_type"] == "A").to_numpy()
    toy_adata.var["marker"] = [f"M{j}" for j in range(toy_adata.n_vars)]
    with warnings.catch_warnings():  # two epochs: the edit extrapolates, and says so
        warnings.simplefilter("ignore", UserWarning)
        sne.tl.batch_correct(toy_adata, "condition", reference_key="spike_in", reference_value=True,
                             max_epochs=2, progress=False, device="cpu",
                             model_kwargs={"hidden": (32,), "n_latent": 8})
    return toy_adata


def test_batch_densities_rows_columns_and_legend(corrected):
    import matplotlib.pyplot as plt

    fig = sne.pl.batch_densities(corrected, ["g0", "M3"])  # a var name and a marker
    assert len(fig.axes) == 8
    assert [ax.get_title() for ax in fig.axes[:4]] == [
        "reference, before", "reference, after", "other cells, before", "other cells, after"]
    assert fig.axes[4].get_ylabel().startswith("M3 (g3)")
    assert all(len(ax.lines) == 2 for ax in fig.axes)  # one density per batch
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["control", "treated"]
    fig = sne.pl.batch_densities(corrected, "g1", batches=["treated"])
    assert [len(ax.lines) for ax in fig.axes] == [1, 1, 1, 1]
    plt.close("all")


def test_batch_densities_names_what_is_missing(corrected):
    with pytest.raises(KeyError, match=r"adata.var\['marker'\].*M0, M1.*\['CD3'\]"):
        sne.pl.batch_densities(corrected, ["g0", "CD3"])
    with pytest.raises(KeyError, match="No neuron-editing result at adata.uns\\['nope'\\]"):
        sne.pl.batch_densities(corrected, ["g0"], key="nope")
    with pytest.raises(ValueError, match="batches \\['z'\\] not in"):
        sne.pl.batch_densities(corrected, ["g0"], batches=["z"])


def test_every_plot_takes_ax_show_and_save(result, corrected, checked, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(True))
    calls = {
        "loss": (sne.pl.loss, (result,), {}, 1),
        "edit_curves": (sne.pl.edit_curves, (result,), {"n_neurons": 2}, 2),
        "reg_mean": (sne.pl.reg_mean, (result,), {"n_degs": 5}, 1),
        "distributions": (sne.pl.distributions, (result, ["g0", "g1", "g2"]), {}, 3),
        "batch_densities": (sne.pl.batch_densities, (corrected, ["g0"]), {}, 4),
        "self_check": (sne.pl.self_check, (checked["populations"],), {}, 2),
    }
    for name, (func, args, kwargs, n_panels) in calls.items():
        fig, axes = plt.subplots(1, n_panels + 1)
        assert func(*args, **kwargs, ax=axes[1:] if n_panels > 1 else axes[1]) is fig
        assert axes[1].has_data() and not axes[0].has_data(), name  # drew where it was told
        path = tmp_path / f"{name}.png"
        assert func(*args, **kwargs, save=path, show=True) is None
        assert path.stat().st_size > 1000 and len(shown) == 1, name
        shown.clear()
        with pytest.raises(ValueError, match=f"ax= must be .*{n_panels} Axes"):
            func(*args, **kwargs, ax=axes if n_panels > 1 else list(axes))
        plt.close("all")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sne.pl.loss(result, save=tmp_path / "no" / "loss.png")


def _boxes(fig, texts):
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in texts]


def test_plot_details_a_user_reads(result):
    # Issue 15: overlapping gene labels, blue whiskers on blue bodies, fractional epoch ticks.
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    fig = sne.pl.reg_mean(result, labels=10, n_degs=10)
    labels = [t for t in fig.axes[0].texts if t.get_text()]
    assert len(labels) == 10
    boxes = _boxes(fig, labels)
    overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    assert not overlaps
    fig = sne.pl.distributions(result, ["g0"])
    median = fig.axes[0].collections[-1]  # drawn last: the medians
    assert tuple(median.get_color()[0]) == to_rgba("black")
    fig = sne.pl.loss(result)
    ticks = fig.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)
    assert fig.axes[0].lines[0].get_xdata()[0] == 1  # epochs counted from 1
    plt.close("all")


def test_save_true_writes_to_scanpys_figdir(result, tmp_path):
    import matplotlib.pyplot as plt
    import scanpy as sc

    # scanpy's settings are class properties, which monkeypatch cannot restore
    saved = sc.settings.figdir, sc.settings.plot_suffix, sc.settings.file_format_figs
    sc.settings.figdir, sc.settings.plot_suffix, sc.settings.file_format_figs = (
        tmp_path / "figures", "_kang", "pdf")
    try:
        fig = sne.pl.loss(result, save=True)
    finally:
        sc.settings.figdir, sc.settings.plot_suffix, sc.settings.file_format_figs = saved
    assert fig is not None  # the figure is returned unless show=True
    assert (tmp_path / "figures" / "loss_kang.pdf").stat().st_size > 1000
    with pytest.raises(TypeError, match="save must be a file path, True"):
        sne.pl.loss(result, save=3)
    plt.close("all")


def test_zero_note_sits_above_the_curves(corrected):
    import matplotlib.pyplot as plt

    corrected.X[:200, 0] = 0  # many exact zeros: the panel notes their share
    fig = sne.pl.batch_densities(corrected, ["g0"])
    noted = [ax for ax in fig.axes if any(t.get_text().startswith("zeros") for t in ax.texts)]
    assert noted
    renderer = fig.canvas.get_renderer()
    for ax in noted:
        note = next(t for t in ax.texts if t.get_text().startswith("zeros"))
        bottom = note.get_window_extent(renderer).y0
        highest = max(ax.transData.transform(line.get_xydata())[:, 1].max() for line in ax.lines)
        assert highest < bottom
    plt.close("all")


def _batches(n: int = 60):
    """Three batches x two populations x reference or not; each batch shifts feature 0 of
    population 'P' only (as in test_self_check)."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    blocks, obs = [], []
    for b, shift in (("b0", 0.0), ("b1", 1.5), ("b2", -1.5)):
        for pop, offset in (("P", 2.0), ("Q", -2.0)):
            for ref in (True, False):
                x = rng.normal(0, 1, size=(n, 5))
                x[:, 1:] += offset
                x[:, 0] += shift * (pop == "P")
                blocks.append(x)
                obs += [(b, pop, ref)] * n
    obs = pd.DataFrame(obs, columns=["batch", "population", "reference"])
    obs[["batch", "population"]] = obs[["batch", "population"]].astype("category")
    obs.index = [f"c{i}" for i in range(len(obs))]
    return ad.AnnData(np.vstack(blocks).astype(np.float32), obs=obs)


@pytest.fixture(scope="module")
def checked():
    """Self-checked predictions, with and without populations, and a self-checked batch
    correction: small data, tiny autoencoders (a few seconds in all)."""
    from test_self_check import PERTURB, SMALL, _cells

    with_pops, plain = _cells(3.0, n=30), _cells(3.0, n=30)
    sne.tl.predict_perturbation(with_pops, "condition", predict_for="E", population_key="population",
                                edit_layer="auto", **PERTURB, **SMALL)
    sne.tl.predict_perturbation(plain, "condition", predict_for="E", edit_layer="input",
                                self_check=True, **PERTURB, **SMALL)
    batches = _batches()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sne.tl.batch_correct(batches, "batch", reference_key="reference", reference_value=True,
                             population_key="population", edit_layer="auto", **SMALL)
    return {"populations": with_pops, "plain": plain, "batch": batches}


def _rows(ax):
    return [t.get_text() for t in ax.get_yticklabels()]


def test_self_check_plot_reads_as_the_choice_was_made(checked, tmp_path):
    import matplotlib as mpl
    import matplotlib.pyplot as plt
    import numpy as np

    from sc_neuronedit import _self_check

    adata = checked["populations"]
    uns = adata.uns["predicted_perturbation"]
    table, summary = uns["self_check"], uns["self_check_summary"]
    names = ["input, pooled", "input, within populations", "bottleneck, pooled",
             "bottleneck, within populations"]  # the table's order, cheapest first
    rc = dict(mpl.rcParams)
    fig = sne.pl.self_check(adata, save=tmp_path / "self_check.png")
    assert dict(mpl.rcParams) == rc  # no global state changed
    assert (tmp_path / "self_check.png").stat().st_size > 10_000
    skill_ax, heat_ax, colourbar = fig.axes  # skill, per-population heatmap, its colour bar
    chosen = summary["chosen"]
    assert _rows(skill_ax) == [n + " (chosen)" if n == chosen else n for n in names]
    weights = {t.get_text(): t.get_fontweight() for t in skill_ax.get_yticklabels()}
    assert weights.pop(chosen + " (chosen)") == "bold"
    assert set(weights.values()) == {"normal"}
    # the mean marks are group_skill's means over groups, row by row
    per_group = _self_check.group_skill(table).groupby("candidate")["skill"].mean()
    (means,) = [line for line in skill_ax.lines if line.get_gid() == "self_check_mean"]
    np.testing.assert_allclose(means.get_xdata(), per_group[names].to_numpy())
    np.testing.assert_allclose(means.get_ydata(), range(4))
    # a dot per group and candidate, each group its own colour, named in the legend
    assert sum(len(c.get_offsets()) for c in skill_ax.collections[:4]) == 4 * 4
    assert [t.get_text() for t in skill_ax.get_legend().get_texts()] == ["A", "B", "C", "D",
                                                                        "mean, 90% interval"]
    # the black bars are the prediction intervals the summary reports
    (bars,) = [c for c in skill_ax.collections if c.get_gid() == "self_check_interval"]
    chosen_bar = bars.get_segments()[names.index(chosen)]
    np.testing.assert_allclose(chosen_bar[:, 0], summary["skill_interval"])
    low, high = summary["skill_interval"]
    verdict = "" if summary["vouched"] else ": may be worse than no change"
    assert skill_ax.get_title() == (f"expected skill {summary['expected_skill']:.2f} ({chosen})\n"
                                    f"90% interval {low:.2f} to {high:.2f}{verdict}")
    # each row's paired gain over the default, as the summary's comparison has it
    notes = [t.get_text() for t in skill_ax.texts if t.get_gid() == "self_check_gain"]
    comparison = summary["comparison"].set_index("candidate")
    assert len(notes) == 4 and notes.count("default") == 1
    for name, note in zip(names, notes):
        if note != "default":
            assert note.startswith(f"gain {comparison.loc[name, 'gain']:+.3f}".replace("-", "−"))
    assert skill_ax.get_xlabel().startswith("skill (1 − error / no-change error)")
    assert any(t.get_text().strip() == "no change" for t in skill_ax.texts)
    assert [line.get_xdata()[0] for line in skill_ax.lines if line.get_linestyle() == "--"] == [0]
    # populations: the heatmap of the mean skill over groups, candidates x populations
    (image,) = heat_ax.images
    pops = table[table.population != "all"]
    expected = pops.groupby(["candidate", "population"])["skill"].mean().unstack().loc[names, ["P", "Q"]]
    np.testing.assert_allclose(image.get_array(), expected.to_numpy())
    assert image.get_cmap().name == "RdBu_r" and image.norm.vmin == -image.norm.vmax
    assert [t.get_text() for t in heat_ax.get_xticklabels()] == ["P", "Q"]
    assert len(heat_ax.texts) == 8 and colourbar.get_ylabel() == "skill"
    plt.close("all")


def test_self_check_plot_without_populations_and_for_batches(checked):
    import matplotlib.pyplot as plt
    import numpy as np

    fig = sne.pl.self_check(checked["plain"])  # no populations: one panel, no heatmap
    (ax,) = fig.axes
    assert _rows(ax) == ["input, pooled (chosen)", "bottleneck, pooled"] and not ax.images

    table = checked["batch"].uns["batch_corrected"]["self_check"]
    fig = sne.pl.self_check(checked["batch"], key="batch_corrected")
    skill_ax, spread_ax = fig.axes  # batch rule: the spread panel, not a heatmap
    assert not spread_ax.images and len(_rows(skill_ax)) == 4
    gap = table.groupby("candidate", sort=False)["spread_gap"].mean()
    (limit,) = [line for line in spread_ax.lines if line.get_gid() == "spread_limit"]
    assert list(limit.get_xdata()) == [gap["no change"]] * 2 and limit.get_linestyle() == "--"
    assert any("uncorrected" in t.get_text() for t in spread_ax.texts)
    np.testing.assert_allclose([p.get_width() for p in spread_ax.patches],
                               gap.drop("no change").to_numpy())
    plt.close("all")


def test_self_check_plot_with_many_groups_and_given_axes():
    """Over 8 groups the dots are grey and unnamed; ax= takes one Axes per panel."""
    import anndata as ad
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    from sc_neuronedit import _self_check_choice


    rng = np.random.default_rng(0)
    records = [dict(group=f"donor{g}", candidate=c, population="all", error=e, no_change=1.0,
                    skill=1 - e)
               for g in range(12)
               for c, e in (("no change", 1.0), ("input, pooled", rng.uniform(0.2, 0.6)),
                            ("bottleneck, pooled", rng.uniform(0.1, 0.5)))]
    table = pd.DataFrame(records)
    chosen, summary = _self_check_choice.choose(table, "bottleneck, pooled")
    table["chosen"] = table.candidate == chosen
    adata = ad.AnnData(np.zeros((2, 2), dtype=np.float32))
    adata.uns["run"] = {"params": {}, "self_check": table, "self_check_summary": summary}
    fig, axes = plt.subplots(1, 2)
    assert sne.pl.self_check(adata, key="run", ax=axes[1]) is fig
    assert not axes[0].has_data()
    legend = axes[1].get_legend()
    assert legend.get_title().get_text() == "12 groups (grey)"
    assert [t.get_text() for t in legend.get_texts()] == ["mean, 90% interval"]
    with pytest.raises(ValueError, match="ax= must be one Axes or 1 Axes"):
        sne.pl.self_check(adata, key="run", ax=axes)
    plt.close("all")


def test_self_check_plot_names_what_is_missing(result):
    with pytest.raises(ValueError, match=r"holds no self-check table; run the tl function .*"
                                         r"self_check=True or edit_layer='auto'"):
        sne.pl.self_check(result)
    with pytest.raises(KeyError, match="No neuron-editing result at adata.uns\\['nope'\\]"):
        sne.pl.self_check(result, key="nope")
