"""Tests of the example notebooks ``notebooks/radon.ipynb`` and ``notebooks/composition.ipynb``.

What is tested
--------------
* The notebook runs from top to bottom in a fresh ``python3`` kernel (nbclient, 300 s per cell)
  without an error, in a temporary working directory, with the repository on ``PYTHONPATH`` so the
  kernel imports this checkout of :mod:`mlgibbs`. It produces its figures (``image/png`` outputs).
* The notebook stored in the repository was saved *with* its outputs (readers see the plots
  without running it) and stays small (< 2 MB); its outputs show no path of the machine that ran
  it.
* Its LOO table is the version-independent one (:func:`mlgibbs.arviz.compare`), in the code, the
  text and the saved output: columns ``elpd`` and ``elpd_diff``, never ArviZ 0.x's ``elpd_loo``;
  ``elpd_diff`` 0 for the first model and negative for the others. After a fresh run too.

``composition.ipynb`` (mlgibbs' sweeps inside NumPyro's ``HMCGibbs`` and a user's loop) likewise runs from top
to bottom in a fresh kernel, was saved with its outputs (no machine paths, < 1 MB) and prints its table of
effective draws per second for NUTS, HMCGibbs and the loop and its figure; its statistics are checked by
``tests/test_numpyro_block.py``.

No statistical tolerances are involved: the numbers in the notebook are checked by the tests of
the job it shares its code with (``tests/test_main_job.py``). The test is skipped only when the
test dependencies nbclient, nbformat or ipykernel cannot be imported.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient", reason="nbclient (a test dependency) is not installed")
nbformat = pytest.importorskip("nbformat", reason="nbformat (a test dependency) is not installed")
pytest.importorskip("ipykernel", reason="ipykernel (a test dependency) is not installed")

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "radon.ipynb"


def _outputs(nb, kind):
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
            if out.output_type == kind]


def _images(nb) -> list:
    """The figures (``image/png`` outputs) a notebook shows."""
    return [out for out in _outputs(nb, "execute_result") + _outputs(nb, "display_data")
            if "image/png" in out.get("data", {})]


def _execute(path: Path, tmp_path, monkeypatch):
    """Run a notebook top to bottom in a fresh ``python3`` kernel (this checkout on ``PYTHONPATH``, the working
    directory ``tmp_path``, 300 s per cell); raises CellExecutionError on the first failing cell."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def _loo_table(nb) -> str:
    """The text of the LOO comparison table the notebook printed."""
    cells = [cell for cell in nb.cells if cell.cell_type == "code" and "loo_compare" in cell.source]
    tables = [out["data"]["text/plain"] for cell in cells for out in cell.outputs
              if "text/plain" in out.get("data", {})]
    assert len(tables) == 1, tables
    return tables[0]


def _check_loo_table(text: str) -> None:
    header, _, *rows = text.splitlines()
    assert header.split() == ["rank", "elpd", "se", "p", "elpd_diff", "dse", "weight", "warning"]
    elpd_diff = [float(row.split()[5]) for row in rows]
    assert elpd_diff[0] == 0 and all(d < 0 for d in elpd_diff[1:]), text


def test_saved_notebook_uses_the_version_independent_loo_table():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert "elpd_loo" not in "".join(cell.source for cell in nb.cells)
    _check_loo_table(_loo_table(nb))


def test_saved_outputs_show_no_local_path():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    outputs = str([cell.outputs for cell in nb.cells if cell.cell_type == "code"])
    for marker in ("site-packages", "/root/", "/home/", "/tmp/"):
        assert marker not in outputs, marker


def test_saved_notebook_has_outputs_and_is_small():
    assert NOTEBOOK.stat().st_size < 2 * 1024**2
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count is not None for cell in code), "saved unexecuted"
    assert not _outputs(nb, "error")
    images = _images(nb)
    assert len(images) >= 4  # two trace/rank plots, the shrinkage figure, the uranium figure


def test_notebook_executes_without_errors(tmp_path, monkeypatch):
    nb = _execute(NOTEBOOK, tmp_path, monkeypatch)
    assert not _outputs(nb, "error")
    images = _images(nb)
    assert len(images) >= 4
    _check_loo_table(_loo_table(nb))


# ------------------------------------------------------------------ notebooks/composition.ipynb
COMPOSITION = REPO_ROOT / "notebooks" / "composition.ipynb"


def _table_text(nb, marker: str) -> str:
    cells = [cell for cell in nb.cells if cell.cell_type == "code" and marker in cell.source]
    texts = [out["data"]["text/plain"] for cell in cells for out in cell.outputs
             if "text/plain" in out.get("data", {})]
    assert len(texts) == 1, texts
    return texts[0]


def _check_composition(nb) -> None:
    assert not _outputs(nb, "error")
    images = _images(nb)
    assert len(images) >= 1
    rates = _table_text(nb, '"ESS of tau / s"').splitlines()
    assert [line.split()[0] for line in rates[2:5]] == ["NUTS", "HMCGibbs", "loop"], rates


def test_composition_notebook_saved_with_outputs_and_small():
    assert COMPOSITION.stat().st_size < 1024**2
    nb = nbformat.read(COMPOSITION, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(cell.execution_count is not None for cell in code), "saved unexecuted"
    outputs = str([cell.outputs for cell in code])
    for marker in ("site-packages", "/root/", "/home/", "/tmp/", "/work/"):
        assert marker not in outputs, marker
    _check_composition(nb)


def test_composition_notebook_executes_without_errors(tmp_path, monkeypatch):
    nb = _execute(COMPOSITION, tmp_path, monkeypatch)
    _check_composition(nb)
