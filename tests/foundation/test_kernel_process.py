"""A real governed kernel, started by jupyter_client from the installed kernelspec."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from governed_kernel import KERNEL_NAME, __version__

TIMEOUT = 60


@pytest.fixture(scope="module")
def kernel(governance_service: Any) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    manager = KernelManager(kernel_name=KERNEL_NAME)
    manager.start_kernel(env={**os.environ, **governance_service.kernel_env("alice")})
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=TIMEOUT)
    yield manager, client
    client.stop_channels()
    manager.shutdown_kernel(now=True)


def reply_to(client: BlockingKernelClient, msg_id: str) -> dict[str, Any]:
    """The shell reply to ``msg_id``, skipping late replies to earlier requests."""
    while True:
        reply: dict[str, Any] = client.get_shell_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply


def execute(client: BlockingKernelClient, code: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run code; return the execute_reply content and the iopub messages of that request."""
    msg_id = client.execute(code)
    reply = reply_to(client, msg_id)
    outputs: list[dict[str, Any]] = []
    while True:
        msg = client.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
        outputs.append(msg)
    return reply["content"], outputs


def test_kernelspec_is_installed_with_its_contract() -> None:
    spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    assert spec.display_name == "Python 3 (governed)"
    assert spec.language == "python"
    assert spec.argv[1:3] == ["-m", "governed_kernel"]
    assert spec.interrupt_mode == "message"
    resources = set(Path(spec.resource_dir).iterdir())
    assert {p.name for p in resources} >= {"kernel.json", "logo-32x32.png", "logo-64x64.png", "logo-svg.svg"}


def test_kernel_info_reports_the_governed_implementation(kernel: Any) -> None:
    _, client = kernel
    reply = client.kernel_info(reply=True, timeout=TIMEOUT)["content"]
    assert reply["status"] == "ok"
    assert reply["implementation"] == "governed_kernel"
    assert reply["implementation_version"] == __version__
    assert reply["language_info"]["name"] == "python"
    assert "governed" in reply["banner"]


def test_cells_run_and_keep_state(kernel: Any) -> None:
    _, client = kernel
    reply, _ = execute(client, "x = 20\ny = x + 22")
    assert reply["status"] == "ok"
    reply, outputs = execute(client, "print('hello'); y")
    assert reply["status"] == "ok"
    streams = [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"]
    results = [m["content"]["data"]["text/plain"] for m in outputs if m["msg_type"] == "execute_result"]
    assert streams == ["hello\n"]
    assert results == ["42"]


def test_errors_reply_with_status_error(kernel: Any) -> None:
    _, client = kernel
    reply, outputs = execute(client, "1 / 0")
    assert reply["status"] == "error"
    assert reply["ename"] == "ZeroDivisionError"
    assert any(m["msg_type"] == "error" for m in outputs)


def test_interrupt_by_message_stops_the_cell_and_keeps_the_kernel(kernel: Any) -> None:
    manager, client = kernel
    msg_id = client.execute("import time\nfor _ in range(600): time.sleep(0.1)")
    deadline = time.monotonic() + TIMEOUT
    while True:  # wait until the cell is really running
        msg = client.get_iopub_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input":
            break
        assert time.monotonic() < deadline
    time.sleep(0.3)
    manager.interrupt_kernel()
    reply = reply_to(client, msg_id)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert manager.is_alive()
    # Right after an error ipykernel briefly aborts queued requests (stop_on_error): retry then.
    for _ in range(20):
        after, _ = execute(client, "1 + 1")
        if after["status"] != "aborted":
            break
        time.sleep(0.2)
    assert after["status"] == "ok"


def test_module_entry_point_accepts_a_connection_file(tmp_path: Path) -> None:
    """`python -m governed_kernel -f FILE` is what the kernelspec runs; start it by hand too."""
    from jupyter_client.connect import write_connection_file

    connection_file, _ = write_connection_file(str(tmp_path / "kernel.json"), ip="127.0.0.1")
    process = subprocess.Popen([sys.executable, "-m", "governed_kernel", "-f", connection_file])  # no service
    client = BlockingKernelClient(connection_file=connection_file)
    client.load_connection_file()
    client.start_channels()
    try:
        # No kernel manager to ask "is it alive?": retry kernel_info until the kernel answers.
        deadline = time.monotonic() + TIMEOUT
        reply: dict[str, Any] = {}
        while not reply:
            assert process.poll() is None, "the kernel process exited"
            assert time.monotonic() < deadline, "the kernel did not answer kernel_info"
            try:
                reply = client.kernel_info(reply=True, timeout=2)["content"]
            except TimeoutError:
                continue
        assert reply["implementation"] == "governed_kernel"
        client.shutdown()
        assert process.wait(timeout=TIMEOUT) == 0
    finally:
        client.stop_channels()
        if process.poll() is None:
            process.kill()


def test_without_a_governance_service_no_cell_runs(tmp_path: Path) -> None:
    """Fail closed: a governed kernel with no service refuses every cell and says how to set it up."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNED_")}
    manager = KernelManager(kernel_name=KERNEL_NAME)
    manager.start_kernel(env=environment)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=TIMEOUT)
        marker = tmp_path / "ran"
        reply, outputs = execute(client, f"open({str(marker)!r}, 'w').write('x'); 1 + 1")
        assert reply["status"] == "error"
        assert reply["ename"] == "GovernanceUnavailable"
        assert "not connected to a governance service" in reply["evalue"]
        assert "jupyter governance run" in reply["evalue"]
        assert not marker.exists()
        errors = [m for m in outputs if m["msg_type"] == "error"]
        assert errors and errors[0]["content"]["ename"] == "GovernanceUnavailable"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
