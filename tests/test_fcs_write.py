"""sne.write_fcs: corrected cells back to FCS files, round trip through sne.read_fcs."""

from pathlib import Path

import numpy as np
import pytest

import sc_neuronedit as sne

RAW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "raw" / "cytonorm_gates"
pytestmark = pytest.mark.skipif(not RAW.is_dir(), reason=f"upstream FCS files not found at {RAW}")
# Four Gates files (two batches x two volunteers): small enough to train on in seconds.
FILES = sorted(RAW.glob("Gates_PTLG02[18]_*.fcs"))


@pytest.fixture(scope="module")
def gates():
    return sne.read_fcs(FILES)


def test_raw_values_round_trip_exactly(gates, tmp_path):
    written = sne.write_fcs(gates, tmp_path)
    assert [p.name for p in written] == [p.name for p in FILES]
    back = sne.read_fcs(tmp_path)
    np.testing.assert_array_equal(back.X, gates.X)  # float32 in, float32 out
    assert back.var_names.tolist() == gates.var_names.tolist()
    assert back.var["marker"].tolist() == gates.var["marker"].tolist()
    assert back.obs["sample"].tolist() == gates.obs["sample"].tolist()


def test_corrected_arcsinh_layer_is_written_as_intensities(gates, tmp_path):
    adata = gates.copy()
    sne.pp.arcsinh(adata, 5)
    adata.obs["batch"] = adata.obs["sample"].str.extract(r"(PTLG\d+)")[0].astype("category")
    adata.obs["reference"] = adata.obs["sample"].str.endswith("_1")
    sne.tl.batch_correct(adata, "batch", reference_key="reference", reference_value=True,
                         layer="arcsinh", mask_var=(adata.var["marker"] != "").to_numpy(),
                         max_epochs=2, progress=False, device="cpu",
                         model_kwargs=dict(hidden=(64,), n_latent=8))
    written = sne.write_fcs(adata, tmp_path / "normalised", layer="batch_corrected")
    assert len(written) == 4
    back = sne.read_fcs(tmp_path / "normalised")
    expected = 5 * np.sinh(adata.layers["batch_corrected"].astype(np.float64))
    np.testing.assert_allclose(back.X, expected, rtol=1e-6, atol=1e-4)
    # the arcsinh layer itself undoes to the raw intensities (float32 rounding of sinh)
    sne.write_fcs(adata, tmp_path / "raw", layer="arcsinh")
    np.testing.assert_allclose(sne.read_fcs(tmp_path / "raw").X, gates.X, rtol=1e-5, atol=1e-3)
    # the correction changed the values that went back to intensities
    assert np.abs(back.X - gates.X).max() > 1


def test_write_errors_leave_nothing_behind(gates, tmp_path):
    with pytest.raises(KeyError, match=r"sample_key='donor' is not a column of adata.obs"):
        sne.write_fcs(gates, tmp_path, sample_key="donor")
    one = tmp_path / "all.fcs"
    assert sne.write_fcs(gates, one, sample_key=None, cofactor=None) == [one]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        sne.write_fcs(gates, one, sample_key=None)
    assert sne.read_fcs(one).n_obs == gates.n_obs
    with pytest.raises(ValueError, match="cofactor must be positive"):
        sne.write_fcs(gates, tmp_path / "x", cofactor=0)
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.fcs"]
