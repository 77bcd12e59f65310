import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

import sc_neuronedit as sne  # noqa: E402


@pytest.fixture
def result(toy_adata):
    sne.tl.predict_perturbation(toy_adata, "condition", control="control", perturbed="treated",
                                groupby="cell_type", predict_for="C", max_epochs=3,
                                progress=False, model_kwargs=dict(hidden=(32,), n_latent=8))
    return toy_adata


def test_plots_draw_from_a_result(result):
    import matplotlib.pyplot as plt

    fig = sne.pl.loss(result)
    assert len(fig.axes[0].lines) == 3  # training, validation, kept epoch
    fig = sne.pl.edit_curves(result, n_neurons=4)
    assert sum(ax.get_visible() for ax in fig.axes) == 4
    fig = sne.pl.mean_scatter(result, highlight=["g0", "g1"])
    assert "r²" in fig.axes[0].get_title()
    fig = sne.pl.distributions(result, ["g0", "g7"])
    assert len(fig.axes) == 2
    plt.close("all")


def test_plots_name_what_is_missing(result):
    with pytest.raises(KeyError, match="results found: predicted_perturbation"):
        sne.pl.loss(result, key="nope")
    with pytest.raises(KeyError, match="Not in adata.var_names"):
        sne.pl.distributions(result, ["g0", "XYZ"])
