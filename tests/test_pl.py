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


def test_every_plot_takes_ax_show_and_save(result, corrected, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(True))
    calls = {
        "loss": (sne.pl.loss, (result,), {}, 1),
        "edit_curves": (sne.pl.edit_curves, (result,), {"n_neurons": 2}, 2),
        "reg_mean": (sne.pl.reg_mean, (result,), {"n_degs": 5}, 1),
        "distributions": (sne.pl.distributions, (result, ["g0", "g1", "g2"]), {}, 3),
        "batch_densities": (sne.pl.batch_densities, (corrected, ["g0"]), {}, 4),
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
