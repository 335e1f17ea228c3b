"""Governed batch runs: `jupyter governance run`, `jupyter execute` and papermill on governed-python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from pipeline_helpers import unique  # type: ignore[import-not-found]

PAN = "4111111111111111"
CLI = [sys.executable, "-m", "governed_server.cli"]


def notebook(path: Path, *sources: str) -> Path:
    nb = new_notebook(
        cells=[new_code_cell(source) for source in sources],
        metadata={
            "kernelspec": {
                "name": "governed-python",
                "display_name": "Python 3 (governed)",
                "language": "python",
            }
        },
    )
    nbformat.write(nb, path)
    return path


def governance_run(path: Path, service: Any, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`jupyter governance run` with an embedded service on the session's store (as on one machine)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNED_")}
    environment.update(GOVERNED_POLICY=str(service.policy_path), **env)
    return subprocess.run(
        [*CLI, "run", str(path), "--db-url", service.db_url, *args],
        capture_output=True, text=True, timeout=300, env=environment,
    )  # fmt: skip


def test_a_clean_notebook_runs_and_is_audited(tmp_path: Path, governance_service: Any) -> None:
    marker = unique("batch-")
    path = notebook(tmp_path / "clean.ipynb", f"x = {marker!r}", "print(x)")
    out = tmp_path / "out.ipynb"
    result = governance_run(path, governance_service, "--output", str(out), GOVERNED_USER="ci-bot")
    assert result.returncode == 0, result.stderr
    executed = nbformat.read(out, as_version=4)
    assert executed.cells[1].outputs[0]["text"] == f"{marker}\n"
    records = [r for r in governance_service.audit() if marker in r["data"].get("code", "")]
    # The run's own guard records the cell before sending it; the kernel's records are its witness.
    assert [r["event_type"] for r in records] == ["request.execute", "cell.start", "cell.end"]
    guarded, records = records[0], records[1:]
    assert guarded["data"]["details"]["guard"] == "batch"
    assert guarded["data"]["details"]["msg_id"] == records[0]["data"]["details"]["msg_id"]
    assert {r["data"]["details"]["guard"] for r in records} == {"batch"}
    assert {r["claimed_user"] for r in records} == {"ci-bot"}
    assert records[0]["origin"]["notebook"] == str(path)
    kernel_ids = {r["origin"]["kernel_id"] for r in records}
    assert len(kernel_ids) == 1 and next(iter(kernel_ids)).startswith("batch-"), kernel_ids
    assert "*" not in next(iter(kernel_ids))


def test_a_high_risk_cell_fails_with_the_request_id_then_runs_once_approved(
    tmp_path: Path, governance_service: Any
) -> None:
    marker = unique("ci-shell-")
    path = notebook(tmp_path / "risky.ipynb", "print('before')", f"!echo {marker}", "print('after')")
    first = governance_run(path, governance_service)
    assert first.returncode == 3, first.stderr
    pending = [r for r in governance_service.pending() if marker in r["code"]]
    assert len(pending) == 1
    request_id = pending[0]["id"]
    assert request_id in first.stderr
    assert f"jupyter governance approvals approve {request_id}" in first.stderr

    governance_service.decide(request_id, "approve", "nightly job, read only")
    out = tmp_path / "out.ipynb"
    second = governance_run(path, governance_service, "--output", str(out))
    assert second.returncode == 0, second.stderr
    texts = [
        "".join(o.get("text", "") for o in cell.outputs) for cell in nbformat.read(out, as_version=4).cells
    ]
    assert marker in texts[1] and texts[2] == "after\n"


def test_waiting_for_an_approver_in_batch(tmp_path: Path, governance_service: Any) -> None:
    import threading
    import time

    marker = unique("ci-wait-")
    path = notebook(tmp_path / "wait.ipynb", f"!echo {marker}")

    def approve_when_pending() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for request in governance_service.pending():
                if marker in request["code"]:
                    governance_service.decide(request["id"], "approve", "watched it")
                    return
            time.sleep(0.2)

    approver = threading.Thread(target=approve_when_pending)
    approver.start()
    result = governance_run(path, governance_service, "--wait-for-approval", "120")
    approver.join()
    assert result.returncode == 0, result.stderr


def test_errors_in_the_ci_log_are_masked_and_exit_1(tmp_path: Path, governance_service: Any) -> None:
    path = notebook(tmp_path / "fails.ipynb", f"card = '{PAN}'\nraise ValueError('bad card ' + card)")
    result = governance_run(path, governance_service)
    assert result.returncode == 1
    assert "ValueError" in result.stderr
    assert PAN not in result.stdout + result.stderr
    assert "1111" in result.stderr


def test_a_denied_cell_is_a_governance_failure(tmp_path: Path, governance_service: Any) -> None:
    path = notebook(tmp_path / "tamper.ipynb", "import sys\nsys.addaudithook(lambda *a: None)")
    result = governance_run(path, governance_service)
    assert result.returncode == 4
    assert "PolicyDenied" in result.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    missing = subprocess.run(
        [*CLI, "run", str(tmp_path / "nope.ipynb")], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2
    assert "no such notebook" in missing.stderr


@pytest.mark.parametrize("runner", ["jupyter-execute", "papermill"])
def test_plain_runners_work_with_a_configured_service_and_refuse_without(
    runner: str, tmp_path: Path, governance_service: Any
) -> None:
    marker = unique("plain-")
    path = notebook(tmp_path / "plain.ipynb", f"print({marker!r})")
    out = tmp_path / "plain.out.ipynb"
    if runner == "jupyter-execute":  # what `jupyter execute --inplace` runs
        out.write_bytes(path.read_bytes())
        script = str(Path(sys.executable).parent / "jupyter-execute")
        argv = [script, "--kernel_name=governed-python", "--inplace", str(out)]
    else:
        argv = [sys.executable, "-m", "papermill", "--kernel", "governed-python", str(path), str(out)]
    bare = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNED_")}
    configured = {**bare, **governance_service.kernel_env("alice")}
    ok = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=configured)
    assert ok.returncode == 0, ok.stderr
    assert marker in out.read_text()

    refused = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=bare)
    assert refused.returncode != 0
    assert "not connected to a governance service" in refused.stdout + refused.stderr + out.read_text()


def test_a_policy_that_requires_a_guard_refuses_kernels_driven_around_it(tmp_path: Path) -> None:
    """``requests.require_guard``: a client talking to the kernel directly (plain nbclient, papermill,
    ``jupyter execute``) gets every cell refused; ``jupyter governance run`` (its own guard) runs."""
    from governance_service import GovernanceService, write_test_policy  # type: ignore[import-not-found]
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    policy = write_test_policy(tmp_path / "policy.yaml", requests={"require_guard": True})
    service = GovernanceService(root=tmp_path, policy_path=policy).start()
    try:
        marker = unique("guarded-")
        path = notebook(tmp_path / "guarded.ipynb", f"print({marker!r})")
        plain = nbformat.read(path, as_version=4)
        env = {**os.environ, **service.kernel_env("alice"), "GOVERNED_POLICY": str(policy)}
        with pytest.raises(CellExecutionError) as refused:
            NotebookClient(plain, kernel_name="governed-python", timeout=120).execute(env=env)
        assert refused.value.ename == "UnguardedRequest"
        assert "jupyter governance run" in str(refused.value)
        out = tmp_path / "out.ipynb"
        result = governance_run(path, service, "--output", str(out))
        assert result.returncode == 0, result.stderr
        assert marker in nbformat.read(out, as_version=4).cells[0].outputs[0]["text"]
    finally:
        service.stop()
