"""The quickstart notebook runs headless, top to bottom, on the tiny demo."""

import os
import pathlib

import nbclient
import nbformat
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path, monkeypatch):
  monkeypatch.setenv("FACEBLUR_QUICKSTART_SIZE", "tiny")
  monkeypatch.setenv("FACEBLUR_QUICKSTART_WORKDIR", str(tmp_path / "quickstart"))
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
  notebook = nbformat.read(ROOT / "colabs" / "quickstart.ipynb", as_version=4)
  client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": str(ROOT)}})
  client.execute()
  outputs = "".join(output.get("text", "") for cell in notebook.cells
                    for output in cell.get("outputs", []))
  assert "PSNR blurred" in outputs
  assert (tmp_path / "quickstart" / "evaluation" / "report.md").exists()
