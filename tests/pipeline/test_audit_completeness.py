"""Every cell leaves its trace: start and end records in order, a start record even if the kernel dies."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from governance_service import GovernanceService, write_test_policy  # type: ignore[import-not-found]
from pipeline_helpers import GovernedKernel, cell_records, unique  # type: ignore[import-not-found]


def test_every_cell_has_start_then_end_and_the_chain_verifies(governance_service: Any) -> None:
    kernel = GovernedKernel(governance_service.kernel_env("alice"))
    markers = [unique(f"cell{n}-") for n in range(5)]
    try:
        for n, marker in enumerate(markers):
            code = f"print({marker!r})" if n != 2 else f"raise RuntimeError({marker!r})"
            kernel.execute(code)
    finally:
        kernel.shutdown()
    seqs: list[int] = []
    for n, marker in enumerate(markers):
        records = cell_records(governance_service, marker, until=2)
        assert [r["event_type"] for r in records] == ["cell.start", "cell.end"], marker
        assert records[1]["outcome"] == ("failure" if n == 2 else "success")
        seqs.extend(r["seq"] for r in records)
    assert seqs == sorted(seqs), "records of successive cells must be in execution order"
    report = governance_service.as_user("dave").get("audit/verify").json()
    assert report["ok"] is True, report


def test_a_kernel_killed_mid_cell_leaves_its_start_record(governance_service: Any) -> None:
    kernel = GovernedKernel(governance_service.kernel_env("alice"))
    marker = unique("killed-")
    try:
        kernel.client.execute(f"import time\n{marker!r}\ntime.sleep(120)")
        deadline = time.monotonic() + 60
        while not cell_records(governance_service, marker):
            assert time.monotonic() < deadline, "no start record"
            time.sleep(0.2)
        kernel.manager.shutdown_kernel(now=True)  # SIGKILL: no chance to record the end
    finally:
        kernel.client.stop_channels()
        kernel.manager.cleanup_resources()
    records = cell_records(governance_service, marker)
    assert [r["event_type"] for r in records] == ["cell.start"]


def test_cells_without_code_to_run_still_get_both_records(governance_service: Any) -> None:
    """The start record's answer is read just before the cell's code runs; a cell IPython never
    gets that far with (empty, a syntax error) still has its start and end records."""
    kernel = GovernedKernel(governance_service.kernel_env("alice"))
    syntax, empty = unique("syntax-"), unique("empty-")
    try:
        assert kernel.execute(f"# {syntax}\ndef broken(:\n").reply["ename"] == "SyntaxError"
        assert kernel.execute(f"# {empty}\n").status == "ok"
        assert kernel.execute("1 + 1").status == "ok"
    finally:
        kernel.shutdown()
    for marker in (syntax, empty):
        records = cell_records(governance_service, marker, until=2)
        assert [r["event_type"] for r in records] == ["cell.start", "cell.end"], marker


def test_service_lost_between_cells_stops_the_next_cell_before_its_code(tmp_path: Path) -> None:
    """The stream is open and the start record already written when the service turns out to be
    gone: the cell must still not run (its code waits for the answer), and say why."""
    policy = write_test_policy(tmp_path / "policy.yaml")
    service = GovernanceService(root=tmp_path, policy_path=policy).start()
    kernel = GovernedKernel(service.kernel_env("alice"))
    marker = tmp_path / "ran"
    try:
        # A broken AST transformer of some extension, registered first: IPython drops it when it
        # raises, which must not make the start record's gate skip its turn.
        first = kernel.execute(
            "import ast\nclass Broken(ast.NodeTransformer):\n    def visit(self, node):\n"
            "        raise ValueError('broken extension')\n"
            "get_ipython().ast_transformers.insert(0, Broken())\nx = 1"
        )
        assert first.status == "ok", first.reply
        service.stop()
        for code in (f"open({str(marker)!r}, 'w').write('x')", "# nothing to run\n"):
            result = kernel.execute(code)
            assert result.status == "error", result.reply
            assert result.reply["ename"] in ("AuditUnavailable", "GovernanceUnavailable"), result.reply
            assert "not run" in result.reply["evalue"] or "cannot be reached" in result.reply["evalue"]
        assert not marker.exists(), "the cell's code ran without its start record"
        counts = kernel.execute("1").reply
        assert counts["status"] == "error"
    finally:
        kernel.client.stop_channels()
        kernel.manager.shutdown_kernel(now=True)


def test_a_gate_that_cannot_be_installed_refuses_the_cell_and_records_why(tmp_path: Path) -> None:
    """Fault injection: once ``StartGate.install`` fails (here: a switch file, read by a
    sitecustomize on the kernel's path), cells are refused with a clear error, their code does not
    run, and the audit log still has their start record and an end record saying why."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    switch = tmp_path / "break-the-gate"
    (hooks / "sitecustomize.py").write_text(
        "import os\n"
        "from governed_kernel import start_gate\n"
        "_install = start_gate.StartGate.install\n"
        "def install(self, shell):\n"
        f"    if os.path.exists({str(switch)!r}):\n"
        "        raise RuntimeError('injected fault')\n"
        "    return _install(self, shell)\n"
        "start_gate.StartGate.install = install\n"
    )
    policy = write_test_policy(tmp_path / "policy.yaml")
    service = GovernanceService(root=tmp_path, policy_path=policy).start()
    pythonpath = os.pathsep.join(p for p in (str(hooks), os.environ.get("PYTHONPATH", "")) if p)
    kernel = GovernedKernel(service.kernel_env("alice", PYTHONPATH=pythonpath))
    ran, before, refused = tmp_path / "ran", unique("before-"), unique("refused-")
    try:
        assert kernel.execute(f"print({before!r})").status == "ok"
        switch.write_text("x")
        result = kernel.execute(f"# {refused}\nopen({str(ran)!r}, 'w').write('x')")
        assert result.status == "error", result.reply
        assert result.reply["ename"] == "GovernanceError", result.reply
        assert "was not run" in result.reply["evalue"] and "injected fault" in result.reply["evalue"]
        assert not ran.exists(), "the cell's code ran without its gate"
        switch.unlink()
        assert kernel.execute("1 + 1").status == "ok"  # the kernel is still usable
        records = cell_records(service, refused, until=2)
        assert [r["event_type"] for r in records] == ["cell.start", "cell.end"]
        assert records[1]["outcome"] == "failure"
        assert "GovernanceError" in records[1]["data"]["details"]["error"]
    finally:
        kernel.shutdown()
        service.stop()
