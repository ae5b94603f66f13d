"""Every notebook in ``notebooks/`` runs from top to bottom without an error.

The notebooks are committed without outputs; this test executes each one in memory with
nbclient (cwd = the repository root, a timeout per cell), checks that no cell raised, and
checks a few outputs a reader relies on.  Nothing is written into the repository.  The
municipality and investor notebooks together take about 16 s (most of it great-expectations
starting up in each kernel), the analyst's risk-transfer notebook about 10 s (its runs are of
8,192 simulated worlds each), so the tests are not marked slow.  The notebooks also assert
what their reader relies on (the risk-transfer notebook: percentiles in order, risk transfer
in [0, 1], P(loss), VaR and expected shortfall recomputed from the worlds, payments that never
fall as the effect grows, the same seed giving the same worlds), so a broken engine fails
``test_notebook_runs``.

**Which Python runs the notebooks.**  The kernel must be the Python running the tests (the
project's ``.venv``), where ``sib_engine`` and its dependencies are installed.  Asking
nbclient for kernel ``python3`` by name is not enough: jupyter_client looks the name up in
the kernelspec directories (``$JUPYTER_PATH``, ``~/.local/share/jupyter/kernels``,
``{sys.prefix}/share/jupyter/kernels``, ``/usr/local/share/...``, ``/usr/share/...``), and
which one wins depends on ``JUPYTER_PATH``/``JUPYTER_PREFER_ENV_PATH`` and on whatever
another Python installed there (a ``python3`` kernelspec from ``ipykernel install --user``
for a system Python would silently run the notebooks without ``sib_engine``).  Installing a
kernelspec into the venv is a manual step a fresh clone would not have.

So the test gives the kernel manager its own kernelspec: ``python3`` is
``[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]``, the
interpreter running pytest, whose ipykernel comes from the ``dev`` extra of
``pyproject.toml`` (``make test`` installs it).  No kernelspec file is read or written, so
the result is the same on a fresh clone, in CI and on a developer's machine.  An extra cell
appended in memory prints the kernel's ``sys.executable``, and the test checks it;
``test_kernel_is_this_python_whatever_kernelspecs_say`` shows that a ``python3`` kernelspec
for another interpreter, first on ``JUPYTER_PATH``, is ignored.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 120  # seconds per cell
KERNEL = "python3"
PROBE = "import sys\nprint('KERNEL-PYTHON=' + sys.executable)"


class ThisPythonKernelSpecs(KernelSpecManager):
    """Kernel ``python3`` is always the interpreter running the tests (see the module doc)."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name != KERNEL:
            raise KeyError(f"only the '{KERNEL}' kernel is provided to the notebook tests, not '{kernel_name}'")
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name=f"Python {sys.version_info[0]}.{sys.version_info[1]} (tests)",
            language="python",
        )


def execute(path: Path) -> tuple[Any, float]:
    """Run the notebook in memory from the repository root; return it and the seconds taken."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    km = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=ThisPythonKernelSpecs())
    client = nbclient.NotebookClient(
        nb,
        km=km,
        kernel_name=KERNEL,
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(ROOT)}},
    )
    start = time.perf_counter()
    client.execute()
    return nb, time.perf_counter() - start


def text_of(cell: Any) -> str:
    """Everything a code cell showed: streams, plain text, HTML and errors."""
    parts: list[str] = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") == "error":
            parts.append(f"{out.get('ename')}: {out.get('evalue')}")
        else:
            data = out.get("data", {})
            for mime in ("text/plain", "text/html", "text/markdown"):
                value = data.get(mime, "")
                parts.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(parts)


def code_cells(nb: Any) -> list[Any]:
    return [c for c in nb.cells if c.cell_type == "code"]


_RUNS: dict[Path, tuple[Any, float]] = {}


def run(path: Path) -> tuple[Any, float]:
    """Each notebook executes once per test session, shared by the tests below."""
    if path not in _RUNS:
        _RUNS[path] = execute(path)
    return _RUNS[path]


def test_kernel_is_this_python_whatever_kernelspecs_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``python3`` kernelspec elsewhere (here one placed first on JUPYTER_PATH, pointing at
    another interpreter) does not change the kernel the notebooks run in."""
    spec_dir = tmp_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        '{"argv": ["/nonexistent/python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],'
        ' "display_name": "another Python", "language": "python"}'
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    km = AsyncKernelManager(kernel_name=KERNEL, kernel_spec_manager=ThisPythonKernelSpecs())
    assert km.kernel_spec is not None
    assert km.kernel_spec.argv[0] == sys.executable
    # whereas the lookup by name alone would have picked the other interpreter
    assert KernelSpecManager().get_kernel_spec(KERNEL).argv[0] == "/nonexistent/python3"


def test_there_are_notebooks() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"municipality_payments.ipynb", "investor_returns.ipynb", "risk_transfer.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == KERNEL
    for i, cell in enumerate(code_cells(nb)):
        assert not cell.outputs, f"{path.name}: code cell {i} has outputs; clear them before committing"
        assert cell.execution_count is None, f"{path.name}: code cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path) -> None:
    before = path.read_bytes()
    nb, seconds = run(path)
    errors = [text_of(c) for c in code_cells(nb) if any(o.get("output_type") == "error" for o in c.outputs)]
    assert not errors, errors
    probe = text_of(code_cells(nb)[-1])
    assert f"KERNEL-PYTHON={sys.executable}" in probe, probe
    assert path.read_bytes() == before, "executing the notebook changed the file"
    print(f"{path.name} ran in {seconds:.1f} s")  # a figure, not an assertion: speed lives in benchmarks


def test_municipality_notebook_outputs() -> None:
    nb, _ = run(ROOT / "notebooks" / "municipality_payments.ipynb")
    cells = code_cells(nb)[:-1]  # without the probe
    shown = "\n".join(text_of(c) for c in cells)
    # the quarantine table names its reasons
    for reason in ("duplicate_participant", "unknown_participant", "event_outside_term",
                   "ineligible", "unparseable_date", "unknown_metric"):
        assert reason in shown, reason
    # the restatement produced explicit correction lines
    assert "true_up" in shown and "clawback" in shown and "restated data" in shown
    # the explanation reaches the clause and the amended price
    assert "price EUR 2,000.00 from 2017-01-01" in shown
    assert "cap_per_participant" in shown
    # the last cell is the budget by year, adding up to the contract's EUR 1,000,000
    last = text_of(cells[-1])
    for year in ("2016", "2017", "2018", "2019"):
        assert year in last
    assert "budget year" in last and "total" in last
    assert "1000000.00" in shown


def test_investor_notebook_outputs() -> None:
    nb, _ = run(ROOT / "notebooks" / "investor_returns.ipynb")
    cells = code_cells(nb)[:-1]
    shown = "\n".join(text_of(c) for c in cells)
    assert "image/png" in {m for c in cells for o in c.outputs for m in o.get("data", {})}, "no plot"
    for column in ("invested", "received", "irr", "moic", "loss", "guarantee_paid"):
        assert column in shown, column
    # the final cell: each funder of both deals, across outcome levels
    last = text_of(cells[-1])
    for funder in ("bank_foundation", "foundation", "kitchen", "bank", "zaanstad_commitment"):
        assert funder in last, funder


def test_risk_transfer_notebook_outputs() -> None:
    nb, _ = run(ROOT / "notebooks" / "risk_transfer.ipynb")
    cells = code_cells(nb)[:-1]
    shown = "\n".join(text_of(c) for c in cells)
    plots = sum(1 for c in cells for o in c.outputs if "image/png" in o.get("data", {}))
    assert plots >= 6, f"{plots} plots"  # payments, returns, noise, payment curves, tornado
    # every party of both deals, with its risk figures
    for party in ("private_consortium", "foundation", "senior_bank", "junior_fund"):
        assert party in shown, party
    for figure in ("p_loss", "var_5", "es_5", "irr_p50", "multiple_mean", "risk transfer",
                   "P(pay | true effect zero)", "P(no payment | effect at target)", "break-even effect",
                   "P(guarantee called)", "P(every deal loses investors money)", "payer concentration"):
        assert figure in shown, figure
    # the checks of the notebook ran (an assertion error would have stopped it before)
    assert "recompute from the worlds" in shown
    # the pessimistic scenario came from its file, for this contract
    assert "('pessimistic', 'brussels-mentoring-2014')" in shown
    # reproducibility: the run again with the same seed shows the same mean payment
    repro = next(text_of(c) for c in cells if "same seed, smaller chunks" in text_of(c))
    means = [line.split("EUR")[-1].strip() for line in repro.splitlines()
             if line.startswith(("first run", "same seed, smaller chunks"))]
    assert len(means) == 2 and means[0] == means[1], repro
