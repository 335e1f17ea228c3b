"""Configuration a kernel loads before any governance code cannot make the next kernel ungoverned.

A cell tries to leave, for the next kernel, an IPython profile that replaces the kernel class, a
startup script, a ``.pth`` file and ``sitecustomize`` in the user site, a kernelspec shadowing the
governed one, a server config; then asks the server for a restart. The restarted kernel is still
the governed one. And a ``kernel_class`` already in the profile (written outside any kernel) is
ignored, logged and recorded, in enforce mode the gated cell is still refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jail_helpers import kernel_info, restart_kernel, run, start_kernel, stop_kernel  # type: ignore[import-not-found]

pytestmark = pytest.mark.jail

OVERRIDE = (
    'c.IPKernelApp.kernel_class = "ipykernel.ipkernel.IPythonKernel"\n'
    'c.GovernedKernelApp.kernel_class = "ipykernel.ipkernel.IPythonKernel"\n'
)

PLANT = r"""
import json, os, site, sys
from pathlib import Path
from IPython.paths import get_ipython_dir
profile = Path(get_ipython_dir()) / "profile_default"
user_site = Path(site.getusersitepackages())
home = Path.home()
marker = {marker!r}
plants = {{
    profile / "ipython_kernel_config.py": {override!r},
    profile / "ipython_config.py": {override!r},
    profile / "governed_kernel_config.py": {override!r},
    profile / "startup" / "00-plant.py": f"open({{marker!r}}, 'w').write('startup ran')",
    user_site / "plant.pth": f"import os; os.environ['PLANTED'] = '1'; open({{marker!r}}, 'w').write('ran')",
    user_site / "sitecustomize.py": f"open({{marker!r}}, 'w').write('sitecustomize ran')",
    user_site / "usercustomize.py": f"open({{marker!r}}, 'w').write('usercustomize ran')",
    home / ".jupyter" / "jupyter_server_config.py": "c.GovernedServerApp.allow_unjailed_kernels = True",
    Path({data_dir!r}) / "kernels" / "governed-python" / "kernel.json":
        json.dumps({{"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{{connection_file}}"],
                    "display_name": "Python 3 (governed)", "language": "python"}}),
}}
results = {{}}
for path, text in plants.items():
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        results[str(path)] = "written"
    except OSError as error:
        results[str(path)] = type(error).__name__ + ": " + (error.strerror or "")
for path in (profile, profile / "startup", user_site, Path(get_ipython_dir())):
    try:
        os.rename(path, str(path) + "-moved")
        results["rename " + str(path)] = "renamed"
    except OSError as error:
        results["rename " + str(path)] = type(error).__name__
print(json.dumps({{"results": results, "profile": str(profile), "user_site": str(user_site)}}))
"""

PLANTED_WORDS = ("kernel_class", " ran", "ipykernel_launcher", "allow_unjailed", "PLANTED")

CHECK = r"""
import json, os, sys
print(json.dumps({"kernel": type(get_ipython().kernel).__name__, "planted": os.environ.get("PLANTED"),
                  "path0": sys.path[0], "isolated": sys.flags.isolated}))
"""


async def test_a_cell_cannot_plant_configuration_for_the_next_kernel(
    bubblewrap: str,
    governed_kernelspec: None,
    jp_fetch: Any,
    jp_serverapp: Any,
    governance: Any,
    jp_data_dir: Path,
    jp_home_dir: Path,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "root_dir" / "planted-code-ran"
    kernel_id = await start_kernel(jp_fetch)
    try:
        code = PLANT.format(marker=str(marker), override=OVERRIDE, data_dir=str(jp_data_dir))
        planted = await run(jp_serverapp, kernel_id, code)
        assert planted.status == "ok", planted.text
        report = json.loads(planted.stdout)
        await restart_kernel(jp_fetch, kernel_id)
        info = await kernel_info(jp_serverapp, kernel_id)
        checked = await run(jp_serverapp, kernel_id, CHECK)
    finally:
        await stop_kernel(jp_fetch, kernel_id)

    assert info["implementation"] == "governed_kernel", info
    assert checked.status == "ok", checked.text
    after = json.loads(checked.stdout)
    assert after["kernel"] == "GovernedKernel" and after["planted"] is None, after
    assert after["isolated"] == 1 and after["path0"] != "", after
    assert not marker.exists(), marker.read_text()
    # What the cell could write went into its jail's own empty folders, never into the host's files.
    planted_on_host = []
    for entry, result in report["results"].items():
        path = Path(entry.removeprefix("rename "))
        if entry.startswith("rename "):
            if not path.exists():
                planted_on_host.append(entry)
        elif path.exists() and any(word in path.read_text() for word in PLANTED_WORDS):
            planted_on_host.append(f"{entry} ({result})")
    assert not planted_on_host, report


@pytest.mark.parametrize("policy_mode", ["enforce"])
async def test_a_kernel_class_in_the_profile_is_ignored_and_recorded(
    bubblewrap: str,
    policy_mode: str,
    governed_kernelspec: None,
    jp_fetch: Any,
    jp_serverapp: Any,
    governance: Any,
    jp_home_dir: Path,
) -> None:
    profile = jp_home_dir / ".ipython" / "profile_default"
    profile.mkdir(parents=True)
    # ipython_config.py: every IPython app reads it; governed_kernel_config.py: the kernel app's own.
    for name in ("ipython_config.py", "ipython_kernel_config.py", "governed_kernel_config.py"):
        (profile / name).write_text(OVERRIDE)
    kernel_id = await start_kernel(jp_fetch)
    try:
        info = await kernel_info(jp_serverapp, kernel_id)
        gated = await run(jp_serverapp, kernel_id, "import governed_kernel")  # denied (control-tampering)
    finally:
        await stop_kernel(jp_fetch, kernel_id)

    assert governance.service.policy.mode == "enforce"
    assert info["implementation"] == "governed_kernel", info
    assert gated.status == "error" and gated.reply["ename"] == "PolicyDenied", gated.text
    records = governance.service.audit.query(kernel_id=kernel_id)
    ignored = [r for r in records if r.event_type == "kernel.config_ignored"]
    assert ignored, [r.event_type for r in records]
    assert "IPKernelApp.kernel_class" in json.dumps(ignored[0].data)
