"""Governed batch runs: a notebook executed with nbclient on ``governed-python``, same controls as Lab.

The kernel needs a governance service and a credential. Either the caller names a service (URL and
the user's own token: the service mints a credential bound to that user) or the run starts an
embedded one on the configured store — by default the same SQLite file JupyterLab uses on this
machine, so an approver working in Lab sees the run's requests.
"""

from __future__ import annotations

import contextlib
import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from governed_kernel import KERNEL_NAME
from governed_kernel.masking import Masker, MaskingConfig
from governed_kernel.policy import load_policy
from governed_kernel.resources import POLICY_ENV, default_policy_path
from governed_server.single_user.serve_process import ServeProcess

EXIT_OK = 0
EXIT_CELL_ERROR = 1
EXIT_USAGE = 2
EXIT_APPROVAL_REQUIRED = 3
EXIT_GOVERNANCE = 4

APPROVAL_ENAMES = {"ApprovalRequired", "ApprovalTimeout"}
GOVERNANCE_ENAMES = {
    "GovernanceUnavailable", "AuditUnavailable", "GovernanceError", "PolicyDenied", "ApprovalDenied",
    "ApprovalExpired", "ApprovalRefused", "ApprovalNotGranted",
}  # fmt: skip


@dataclass(frozen=True)
class KernelAccess:
    """What the kernel needs to reach the service."""

    api_url: str
    token: str
    kernel_id: str
    user: str


@dataclass
class RunResult:
    exit_code: int
    message: str
    cells_run: int = 0


class RunError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_GOVERNANCE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextmanager
def embedded_service(db_url: str, policy_path: Path, workdir: Path) -> Iterator[KernelAccess]:
    """``jupyter governance serve`` on loopback for the run, and a credential for the OS user."""
    from governed_server.ids import new_batch_kernel_id
    from governed_server.service.credentials import CredentialIssuer
    from governed_server.service.store import StoreError, open_store

    try:
        store = open_store(db_url)
    except StoreError as error:
        raise RunError(f"cannot open the governance store: {error}") from None
    user = getpass.getuser()
    # The id is in every record of the run: one that reads as a card number would be stored masked.
    kernel_id = new_batch_kernel_id(_masker(policy_path))
    try:
        token = CredentialIssuer(store, server_id="jupyter governance run").mint(kernel_id, user)
    finally:
        store.close()
    server = ServeProcess(
        policy_path=policy_path, db_url=db_url, log_path=workdir / "governance-service.log",
        server_args=["--ServerApp.log_level=WARN"],
    )  # fmt: skip
    try:
        server.start()
    except RuntimeError as error:
        raise RunError(str(error)) from None
    try:
        yield KernelAccess(api_url=server.api_url, token=token, kernel_id=kernel_id, user=user)
    finally:
        server.stop()
        _revoke_locally(db_url, kernel_id)


def _revoke_locally(db_url: str, kernel_id: str) -> None:
    from governed_server.service.credentials import CredentialIssuer
    from governed_server.service.store import open_store

    store = open_store(db_url)
    try:
        CredentialIssuer(store).revoke(kernel_id)
    finally:
        store.close()


@contextmanager
def remote_service(url: str, token: str) -> Iterator[KernelAccess]:
    """A service named by URL: the user's token mints a credential bound to that user."""
    base = url.rstrip("/") + "/governance/api/"
    headers = {"Authorization": f"token {token}"}
    try:
        response = httpx.post(base + "credentials", json={}, headers=headers, timeout=30)
    except httpx.HTTPError as error:
        raise RunError(f"cannot reach the governance service at {url}: {error}") from None
    if response.status_code != 201:
        raise RunError(
            f"the governance service refused a credential (HTTP {response.status_code}): "
            f"{response.text[:300]}"
        )
    minted = response.json()
    try:
        yield KernelAccess(
            api_url=base, token=minted["token"], kernel_id=minted["kernel_id"], user=minted["user"]
        )
    finally:
        with contextlib.suppress(httpx.HTTPError):
            httpx.delete(base + f"credentials/{minted['kernel_id']}", headers=headers, timeout=30)


def run_notebook(
    notebook_path: Path,
    *,
    output: Path | None,
    access: KernelAccess,
    timeout: float | None,
    wait_for_approval: float,
    kernel_name: str = KERNEL_NAME,
    policy_path: Path | None = None,
) -> RunResult:
    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    from governed_server.single_user.batch_guard import GuardedNotebookClient

    notebook = nbformat.read(notebook_path, as_version=4)  # type: ignore[no-untyped-call]
    env = {
        **os.environ,
        "GOVERNED_SERVICE_URL": access.api_url,
        "GOVERNED_KERNEL_TOKEN": access.token,
        "GOVERNED_APPROVAL_TIMEOUT": str(wait_for_approval),
        "JPY_SESSION_NAME": str(notebook_path),
    }
    if policy_path is not None:
        env[POLICY_ENV] = str(policy_path)
    # The run's own inbound guard: each cell is recorded with the service before it is sent.
    client = GuardedNotebookClient(
        notebook, kernel_name=kernel_name, timeout=int(timeout) if timeout else None,
        resources={"metadata": {"path": str(notebook_path.parent.resolve())}},
        api_url=access.api_url, token=access.token,
    )  # fmt: skip
    masker = _masker(policy_path)
    result = RunResult(EXIT_OK, f"{notebook_path}: all cells ran")
    try:
        client.execute(env=env)
    except CellExecutionError as error:
        ename = getattr(error, "ename", "")
        code = (
            EXIT_APPROVAL_REQUIRED if ename in APPROVAL_ENAMES
            else EXIT_GOVERNANCE if ename in GOVERNANCE_ENAMES
            else EXIT_CELL_ERROR
        )  # fmt: skip
        result = RunResult(
            code, masker.mask_text(f"{notebook_path}: {ename}: {getattr(error, 'evalue', error)}")[0]
        )
    except CellTimeoutError as error:
        result = RunResult(
            EXIT_CELL_ERROR, masker.mask_text(f"{notebook_path}: a cell timed out: {error}")[0]
        )
    except DeadKernelError as error:
        result = RunResult(EXIT_CELL_ERROR, f"{notebook_path}: the kernel died: {error}")
    except RuntimeError as error:  # the kernel did not start, etc.
        result = RunResult(EXIT_GOVERNANCE, masker.mask_text(f"{notebook_path}: {error}")[0])
    finally:
        if output is not None:
            nbformat.write(notebook, output)  # type: ignore[no-untyped-call]
    result.cells_run = sum(
        1 for cell in notebook.cells if cell.get("cell_type") == "code" and cell.get("outputs")
    )
    return result


def _masker(policy_path: Path | None) -> Masker:
    try:
        policy = load_policy(policy_path or default_policy_path())
        return Masker(MaskingConfig.from_mapping(policy.masking))
    except Exception:
        return Masker()


def describe_exit(code: int) -> str:
    return {
        EXIT_OK: "success",
        EXIT_CELL_ERROR: "a cell raised an error",
        EXIT_USAGE: "usage error",
        EXIT_APPROVAL_REQUIRED: "a cell needs approval",
        EXIT_GOVERNANCE: "governance refused or failed",
    }.get(code, "unknown")
