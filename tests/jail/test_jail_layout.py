"""The jail's layout as a bubblewrap command, without a server (``governed_server.single_user.jail``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from governed_server.single_user.jail import (
    CORE_FLAGS,
    NEVER_PASSED,
    JailLayout,
    MountKind,
    jail_environment,
    python_isolated,
)
from governed_server.single_user.jail_probe import probe


@pytest.fixture
def home(tmp_path: Path) -> Path:
    for sub in (".local/share/jupyter/runtime/governed/k1", ".jupyter", ".ipython/profile_default", "work"):
        (tmp_path / "home" / sub).mkdir(parents=True)
    (tmp_path / "home" / "key.pem").write_text("secret")
    return tmp_path / "home"


def layout(home: Path) -> JailLayout:
    return JailLayout(
        kernel_dir=home / ".local/share/jupyter/runtime/governed/k1",
        workdir=home / "work",
        hidden=(home / ".local/share/jupyter", home / ".jupyter", home / "key.pem", home / "missing"),
        readonly=(home / ".ipython/profile_default", Path("/usr/lib")),
        writable=(home, home / "work"),
    )


def test_the_most_specific_path_wins_and_the_kernel_dir_comes_last(home: Path) -> None:
    jail = layout(home)
    mounts = jail.mounts()
    order = [m.path for m in mounts]
    assert order[-1] == home / ".local/share/jupyter/runtime/governed/k1"
    assert order.index(home) < order.index(home / ".local/share/jupyter") < order.index(order[-1])
    assert Path("/usr/lib") not in order, "read-only under the read-only base: no mount needed"
    assert home / "missing" not in order
    kinds = {m.path: m.kind for m in mounts}
    assert kinds[home / ".local"] is kinds[home / ".local/share"] is MountKind.PIN
    assert jail.shows(home / "work/a.ipynb") and jail.writes(home / "work/a.ipynb")
    assert not jail.shows(home / ".local/share/jupyter/governance/governance.sqlite")
    assert not jail.shows(home / ".jupyter/jupyter_server_config.json")
    assert not jail.shows(home / "key.pem")
    assert jail.shows(home / ".ipython/profile_default/startup/00.py")
    assert not jail.writes(home / ".ipython/profile_default/startup/00.py")
    assert jail.writes(home / ".local/share/jupyter/runtime/governed/k1/kernel.json")
    assert not jail.writes(Path("/usr/lib/python3/dist-packages/x.pth"))
    assert jail.writes(Path("/tmp/scratch")) and not jail.shows(Path("/tmp/x").resolve())


def test_the_command_has_the_namespaces_and_hides_files_and_folders(home: Path) -> None:
    argv = layout(home).bwrap_argv("/usr/bin/bwrap", ["python", "-I", "-m", "governed_kernel"])
    text = " ".join(argv)
    assert argv[: 1 + len(CORE_FLAGS)] == ["/usr/bin/bwrap", *CORE_FLAGS]
    for flag in ("--unshare-pid", "--cap-drop ALL", "--die-with-parent", "--proc /proc", "--ro-bind / /"):
        assert flag in text
    assert text.index("--ro-bind / /") < text.index("--proc /proc")
    assert f"--tmpfs {home / '.jupyter'}" in text and f"--remount-ro {home / '.jupyter'}" in text
    assert f"--ro-bind /dev/null {home / 'key.pem'}" in text
    assert "--unsetenv JPY_PARENT_PID" in text
    assert argv[argv.index("--") + 1 :] == ["python", "-I", "-m", "governed_kernel"]


def test_the_environment_is_an_allow_list_and_server_secrets_never_pass() -> None:
    environ = {"PATH": "/bin", "LC_ALL": "C", "GOVERNED_DB_URL": "postgresql://u:pw@h/d",
               "JUPYTER_TOKEN": "t", "JUPYTERHUB_API_TOKEN": "h", "AWS_KEY": "a", "MY_VAR": "1"}  # fmt: skip
    kept = jail_environment(
        environ, ["PATH", "LC_*", "MY_*", "GOVERNED_*", "JUPYTER*"], overrides={"TMPDIR": "/tmp"}
    )
    assert kept == {"PATH": "/bin", "LC_ALL": "C", "MY_VAR": "1", "TMPDIR": "/tmp"}
    assert {"GOVERNED_DB_URL", "JUPYTERHUB_API_TOKEN", "JUPYTER_TOKEN"} <= NEVER_PASSED


def test_python_is_started_isolated() -> None:
    assert python_isolated(["/venv/bin/python3", "-m", "governed_kernel"]) == [
        "/venv/bin/python3", "-I", "-m", "governed_kernel",
    ]  # fmt: skip
    assert python_isolated(["/venv/bin/python", "-I", "-m", "x"]).count("-I") == 1
    assert python_isolated(["/usr/bin/env", "x"]) == ["/usr/bin/env", "x"]


def test_the_trial_says_why_there_is_no_jail() -> None:
    state = probe("/nonexistent/bwrap")
    assert not state.available
    assert state.describe() == "none: bubblewrap is not installed ('/nonexistent/bwrap' not found)"
