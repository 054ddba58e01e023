"""data_exploration.ipynb runs top to bottom, offline, so it cannot rot."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPLORE_MODEL", str(model_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    notebook = nbformat.read(ROOT / "data_exploration.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = "".join(
        out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    assert "corrupt" in outputs and "broken.jpg" in outputs  # the planted corrupt file is reported
    assert "copy-of-0001.jpg" in outputs  # the planted exact duplicate is found
    assert "resized-0001.jpg" in outputs  # and the near-duplicate
    assert "P@5" in outputs and "image→image" in outputs
    assert not [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
