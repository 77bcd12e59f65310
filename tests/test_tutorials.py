"""Every tutorial runs top to bottom on the real data (fast mode: few epochs)."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("*.ipynb"))


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_runs(path, monkeypatch):
    import sc_neuronedit as sne

    monkeypatch.setenv("SC_NEURONEDIT_FAST", "1")
    # The kernel starts in tutorials/, where a relative data folder would point elsewhere.
    monkeypatch.setenv("SC_NEURONEDIT_DATA_DIR", str(sne.datasets.data_dir()))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    assert os.environ["SC_NEURONEDIT_FAST"] == "1"
