"""Data set loaders and read_fcs, offline against the upstream files in ../shared/data/raw."""

import hashlib
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import sc_neuronedit as sne

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RAW = SHARED / "raw"
GATES = sorted((RAW / "cytonorm_gates").glob("*.fcs"))

pytestmark = pytest.mark.skipif(not RAW.is_dir(), reason=f"upstream files not found at {RAW}")


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty data folder, and no mirror set in the environment."""
    folder = tmp_path / "data"
    monkeypatch.setenv("SC_NEURONEDIT_DATA_DIR", str(folder))
    monkeypatch.delenv("SC_NEURONEDIT_DATA_URL", raising=False)
    return folder


def _dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("loader", "filename", "mirror"),
    [
        ("kang_pbmc", "kang_pbmc_valid.h5ad", "env-file-url"),
        ("bodenmiller_bcrxl", "bodenmiller_bcrxl.h5ad", "base_url-path"),
        ("cytonorm_gates", "cytonorm_gates.h5ad", "base_url-file-url"),
    ],
)
def test_conversion_reproduces_shared_h5ad(data_dir, monkeypatch, loader, filename, mirror):
    kwargs = {}
    if mirror == "env-file-url":
        monkeypatch.setenv("SC_NEURONEDIT_DATA_URL", RAW.as_uri())
    elif mirror == "base_url-path":
        kwargs["base_url"] = str(RAW)
    else:
        kwargs["base_url"] = RAW.as_uri() + "/"
    got = getattr(sne.datasets, loader)(**kwargs)
    want = ad.read_h5ad(SHARED / filename)

    assert got.shape == want.shape
    assert sp.issparse(got.X) == sp.issparse(want.X) and got.X.dtype == want.X.dtype == np.float32
    np.testing.assert_array_equal(_dense(got.X), _dense(want.X))
    pd.testing.assert_frame_equal(got.obs, want.obs)  # names, columns, dtypes, categories
    pd.testing.assert_frame_equal(got.var, want.var)
    assert got.uns["provenance"] == want.uns["provenance"]
    # written once into the data folder, with no download left-overs
    assert sorted(p.name for p in data_dir.iterdir()) == [filename]


def test_documented_content(data_dir):
    gates = sne.datasets.cytonorm_gates(base_url=RAW)
    assert gates.obs["file_name"].value_counts().eq(1000).all()  # upstream files: 1,000 cells each
    assert gates.obs.groupby("batch", observed=True)["reference"].sum().eq(1000).all()
    bcr = sne.datasets.bodenmiller_bcrxl(base_url=RAW)
    assert bcr.n_obs == 16935  # every event of the 12 flowFrames
    assert bcr.obs["condition"].value_counts().to_dict() == {"BCRXL": 9798, "Ref": 7137}
    assert (bcr.var["marker_class"] == "type").sum() == 10


def test_converted_file_is_read_without_download(data_dir, monkeypatch):
    data_dir.mkdir()
    shutil.copy(SHARED / "kang_pbmc_valid.h5ad", data_dir)
    monkeypatch.setenv("SC_NEURONEDIT_DATA_URL", str(data_dir / "no-such-mirror"))
    adata = sne.datasets.kang()  # the old name is an alias
    assert sne.datasets.kang is sne.datasets.kang_pbmc
    assert adata.shape == (1975, 6998)


def test_checksum_mismatch_is_a_clear_error(data_dir, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("PBMC_fs.rda", "PBMC_panel.rda"):
        shutil.copy(RAW / name, mirror)
    (mirror / "PBMC_md.rda").write_bytes((RAW / "PBMC_md.rda").read_bytes()[:-1] + b"\0")
    with pytest.raises(OSError, match="Checksum mismatch") as err:
        sne.datasets.bodenmiller_bcrxl(base_url=mirror)
    message = str(err.value)
    assert str(mirror / "PBMC_md.rda") in message
    assert "f3862416f375db9b6d0ca1128247f70c446be1a31dc0935651f6e501b7b2a4b8" in message
    assert "SC_NEURONEDIT_DATA_DIR" in message
    assert not data_dir.exists()  # nothing half-written, and no folder left that the call made


def test_relative_data_dir_is_resolved_where_read(tmp_path, monkeypatch):
    # A notebook kernel starts in another folder: the path handed on must be absolute.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SC_NEURONEDIT_DATA_DIR", "../shared/data")
    assert sne.datasets.data_dir() == tmp_path.parent / "shared" / "data"
    assert sne.datasets.data_dir().is_absolute()


@pytest.mark.parametrize("base_url",
                         ["http://127.0.0.1:9/mirror", "file:///no/such/mirror", "/no/such/mirror"])
def test_unreachable_url_names_url_and_offline_fix(data_dir, base_url):
    with pytest.raises(ConnectionError) as err:
        sne.datasets.cytonorm_gates(base_url=base_url)
    message = str(err.value)
    assert f"{base_url}/cytonorm_gates/Gates_PTLG021_Unstim_Control_1.fcs" in message
    assert "cytonorm_gates.h5ad" in message and "SC_NEURONEDIT_DATA_DIR" in message
    assert str(data_dir) in message
    assert not data_dir.exists()


def test_pinned_urls_are_the_documented_ones():
    readme = (RAW / "README.md").read_text()
    from sc_neuronedit.datasets import _bodenmiller, _cytonorm, _kang

    files = _kang.UPSTREAM + _bodenmiller.UPSTREAM + _cytonorm.UPSTREAM
    assert len(files) == 12
    for f in files:
        assert f"| `{f.name}` | {f.url} | `{f.sha256}` |" in readme
        assert _digest(RAW / f.name) == f.sha256


def test_read_fcs_gates_files():
    import flowio

    before = [_digest(p) for p in GATES]
    adata = sne.read_fcs(GATES)
    assert [_digest(p) for p in GATES] == before  # the user's files are untouched

    assert adata.shape == (8000, 55) and adata.X.dtype == np.float32
    assert adata.var_names[:3].tolist() == ["Time", "Event_length", "Y89Di"]
    assert adata.var_names[-1] == "beadDist"
    markers = adata.var["marker"]
    assert markers["Nd145Di"] == "CD4" and markers["Pd102Di"] == "BC1" and markers["Ir191Di"] == "DNA1"
    assert (markers == "").sum() == 9  # incl. the blank ' ' $PnS of the PTLG026 files
    assert adata.obs["file_name"].cat.categories.tolist() == [p.name for p in GATES]
    assert adata.obs["file_name"].value_counts().eq(1000).all()
    assert adata.obs["sample"].iloc[0] == "Gates_PTLG021_Unstim_Control_1"
    assert adata.obs_names.is_unique and adata.obs_names[0] == "Gates_PTLG021_Unstim_Control_1_0"

    first = flowio.FlowData(str(GATES[0])).as_array(preprocess=False)
    np.testing.assert_array_equal(adata.X[:1000], first.astype(np.float32))
    shared = ad.read_h5ad(SHARED / "cytonorm_gates.h5ad")
    np.testing.assert_array_equal(adata.X, shared.X)

    one = sne.read_fcs(GATES[3])  # a single path, str or Path
    assert one.n_obs == 1000 and one.obs["file_name"].unique().tolist() == [GATES[3].name]
    folder = sne.read_fcs(RAW / "cytonorm_gates")  # a folder: its .fcs files by name
    assert folder.obs_names.equals(adata.obs_names)


def test_read_fcs_same_file_twice_gets_unique_names():
    adata = sne.read_fcs([GATES[0], str(GATES[0])])
    assert adata.obs_names.is_unique
    assert adata.obs["sample"].cat.categories.tolist() == [
        "Gates_PTLG021_Unstim_Control_1-1", "Gates_PTLG021_Unstim_Control_1-2"]


def test_read_fcs_errors(tmp_path):
    import flowio

    with pytest.raises(FileNotFoundError, match="missing.fcs"):
        sne.read_fcs([GATES[0], tmp_path / "missing.fcs"])
    not_fcs = tmp_path / "table.fcs"
    not_fcs.write_text("cell,CD4\n1,2\n")
    with pytest.raises(ValueError, match="not an FCS file"):
        sne.read_fcs(not_fcs)
    with pytest.raises(ValueError, match="No FCS file"):
        sne.read_fcs([])
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="No .fcs file"):
        sne.read_fcs(empty)

    other = tmp_path / "other.fcs"
    with open(other, "wb") as f:
        flowio.create_fcs(f, np.arange(6, dtype=float), ["FSC-A", "CD3"])
    with pytest.raises(ValueError, match="different channels"):
        sne.read_fcs([GATES[0], other])
    small = sne.read_fcs(other)
    assert small.var_names.tolist() == ["FSC-A", "CD3"] and small.var["marker"].tolist() == ["", ""]
    np.testing.assert_array_equal(small.X, [[0, 1], [2, 3], [4, 5]])


@pytest.mark.skipif(not (SHARED / "bodenmiller_bcrxl.h5ad").is_file(), reason="no converted BCRXL file")
def test_bcrxl_combination_semisynthetic(monkeypatch):
    from sc_neuronedit.datasets import _semisynthetic as syn

    # the effect functions: A and B touch disjoint markers, so they commute; at gamma = 0 the
    # combination is their composition, and gamma only moves pPlcg2 of T cells, by 0.5 gamma
    names = pd.Index(["CD20", "CD3", "pS6", "pErk", "pp38", "pStat1", "pAkt", "pPlcg2"])
    X = np.random.default_rng(0).normal(2, 1.5, (300, len(names))).astype(np.float32)
    pop = syn.populations(X, names)
    assert set(pop) == {"B", "T", "other"}
    ab = syn.drug_b(syn.drug_a(X, names, pop), names, pop)
    ba = syn.drug_a(syn.drug_b(X, names, pop), names, pop)
    np.testing.assert_allclose(ab, ba, rtol=1e-6)
    np.testing.assert_array_equal(syn.combination(X, names, pop, 0.0), ab)
    diff = syn.combination(X, names, pop, 2.0) - ab
    expected = np.zeros_like(diff)
    expected[pop == "T", names.get_loc("pPlcg2")] = 1.0
    np.testing.assert_allclose(diff, expected, atol=1e-6)

    monkeypatch.setenv("SC_NEURONEDIT_DATA_DIR", str(SHARED))
    null = sne.datasets.bcrxl_combination(0.0, n_cells=500, random_state=1)
    synergy = sne.datasets.bcrxl_combination(1.0, n_cells=500, random_state=1)
    assert null.shape == (2000, 24) and null.X.dtype == np.float32
    assert null.obs["condition"].cat.categories.tolist() == ["control", "A", "B", "A+B"]
    assert null.obs["condition"].value_counts().eq(500).all()
    assert null.obs_names.is_unique  # four disjoint groups of real cells
    assert null.obs_names.equals(synergy.obs_names)  # same split at every gamma
    full = sne.datasets.bodenmiller_bcrxl()
    ref = full[null.obs_names]
    assert (ref.obs["condition"] == "Ref").all()
    X0 = np.arcsinh(np.asarray(ref.X, dtype=np.float32) / 5)
    pop = syn.populations(X0, null.var_names)
    assert (null.obs["population"].to_numpy() == pop).all()
    cond = null.obs["condition"].to_numpy()
    for c, f in {"control": lambda M, p: M, "A": lambda M, p: syn.drug_a(M, null.var_names, p),
                 "B": lambda M, p: syn.drug_b(M, null.var_names, p),
                 "A+B": lambda M, p: syn.drug_a(syn.drug_b(M, null.var_names, p), null.var_names, p)}.items():
        m = cond == c
        np.testing.assert_allclose(null.X[m], f(X0[m], pop[m]), rtol=1e-6)
    shift = synergy.X - null.X
    moved = (cond == "A+B")[:, None] & (pop == "T")[:, None] & (null.var_names == "pPlcg2")[None, :]
    np.testing.assert_allclose(shift[moved], 0.5, atol=1e-5)
    assert not shift[~moved].any()
    with pytest.raises(ValueError, match="n_cells"):
        sne.datasets.bcrxl_combination(n_cells=2000)
