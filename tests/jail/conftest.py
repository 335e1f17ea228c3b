"""A real jupyter_server with the governance extension whose governed kernels run in the jail.

The tests here FAIL (not skip) when bubblewrap cannot jail kernels on this machine: CI installs it
(``.ci/system-deps.sh``), and a jail that was never tested must not pass. Modules set the policy
mode (``policy_mode``) and extra ``GovernedServerApp`` settings (``jail_settings``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from governance_service import TOKENS, write_test_policy  # type: ignore[import-not-found]

import governed_kernel
from governed_server.identity_provider import NamedTokenIdentityProvider
from governed_server.single_user.jail_probe import probe


@pytest.fixture(scope="session")
def bubblewrap() -> str:
    """The bwrap binary, after a successful trial jail; fails with what to install otherwise."""
    state = probe()
    if not state.available:
        pytest.fail(f"the kernel jail cannot be tested here: {state.reason} (.ci/system-deps.sh installs "
                    "bubblewrap)", pytrace=False)  # fmt: skip
    return state.bwrap


@pytest.fixture
def policy_mode() -> str:
    """Observe by default: the in-kernel gate records but stops nothing, so what holds is the OS."""
    return "observe"


@pytest.fixture
def jail_settings() -> dict[str, Any]:
    return {}


@pytest.fixture
def server_paths(tmp_path: Path) -> dict[str, Path]:
    return {
        "store": tmp_path / "store" / "governance.sqlite",
        "checkpoints": tmp_path / "checkpoints",
        "key": tmp_path / "keys" / "audit.pem",
        "policy": tmp_path / "policy.yaml",
    }


@pytest.fixture
def jp_server_config(
    server_paths: dict[str, Path], policy_mode: str, jail_settings: dict[str, Any]
) -> dict[str, Any]:
    write_test_policy(server_paths["policy"], mode=policy_mode)
    return {
        "ServerApp": {
            "jpserver_extensions": {"governed_server": True},
            "identity_provider_class": NamedTokenIdentityProvider,
        },
        "NamedTokenIdentityProvider": {"users": {token: name for name, token in TOKENS.items()}},
        "GovernedServerApp": {
            "policy_path": str(server_paths["policy"]),
            "db_url": f"sqlite:///{server_paths['store']}",
            "checkpoint_dir": str(server_paths["checkpoints"]),
            "signing_key_path": str(server_paths["key"]),
            "allow_ungoverned_kernels": True,  # the echo kernel: a second, unjailed kernel to compare
            **jail_settings,
        },
    }


@pytest.fixture
def governed_kernelspec(jp_data_dir: Path) -> None:
    """The kernelspec in the test's isolated data dir (as pip installs it into sys.prefix)."""
    source = Path(governed_kernel.__file__).parent / "kernelspec"
    shutil.copytree(source, jp_data_dir / "kernels" / "governed-python")


@pytest.fixture
def governance(jp_serverapp: Any) -> Any:
    app = jp_serverapp.web_app.settings["governed_server"]
    assert app.service is not None, app.unavailable_reason
    return app
