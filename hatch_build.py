"""Build the optional C extension modules (hatchling custom build hook, and ``python hatch_build.py``).

Each entry of :data:`EXTENSIONS` is one CPython extension module: its dotted name and its C sources
(paths from the repository root). Add a module by adding an entry; nothing else changes.

- Wheel builds (``pip install .``, ``python -m build``): each module is compiled with the running
  interpreter's compiler settings (``sysconfig``: ``CC``, ``CCSHARED``, ``LDSHARED``) into a
  temporary directory and put into the wheel at its package path; the wheel is then tagged for this
  interpreter and platform (``cp311-cp311-linux_x86_64``...).
- Editable installs (``pip install -e .``, ``make dev``) import the package from the source tree, so
  the modules are compiled *in place* next to their package's Python files (git-ignored).
- ``python hatch_build.py`` (``make native``) compiles them in place without pip, e.g. after editing
  a C file.

Every extension here is an accelerator with a pure-Python fallback, so a failed compilation only
warns and the wheel stays pure Python (``GOVERNED_NATIVE=require`` makes it an error;
``GOVERNED_NATIVE=0`` skips compiling). The SHA-256 of the sources is compiled in as
``<MODULE>_SOURCE_HASH`` so the package can tell a stale in-place build from a current one.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent

EXTENSIONS: list[tuple[str, list[str]]] = [
    ("governed_kernel.masking._panscan", ["kernel/governed_kernel/masking/_panscan.c"]),
]
"""(dotted module name, C sources relative to the repository root)."""

PACKAGE_DIRS = {"governed_kernel": "kernel/governed_kernel", "governed_server": "server_ext/governed_server"}
"""Where each top-level package lives in the source tree (as in pyproject's wheel ``packages``)."""

CFLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fno-strict-aliasing"]


def source_hash(sources: list[str]) -> str:
    digest = hashlib.sha256()
    for source in sources:
        digest.update((ROOT / source).read_bytes())
    return digest.hexdigest()


def module_path(name: str) -> Path:
    """Path of the compiled module inside the wheel (``governed_kernel/masking/_panscan.cpython-...so``)."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return Path(*name.split(".")).with_suffix("").with_name(name.rsplit(".", 1)[-1] + suffix)


def in_place_path(name: str) -> Path:
    top = name.partition(".")[0]
    relative = module_path(name).relative_to(top)
    return ROOT / PACKAGE_DIRS[top] / relative


def compile_extension(name: str, sources: list[str], target: Path) -> None:
    """Compile and link one module to ``target`` with the interpreter's own compiler settings."""
    config = sysconfig.get_config_vars()
    cc = shlex.split(os.environ.get("CC") or config.get("CC") or "cc")
    ccshared = shlex.split(config.get("CCSHARED") or "-fPIC")
    ldshared = shlex.split(os.environ.get("LDSHARED") or config.get("LDSHARED") or "cc -shared")
    include = sysconfig.get_paths()["include"]
    macro = name.rsplit(".", 1)[-1].lstrip("_").upper() + "_SOURCE_HASH"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        objects = []
        for source in sources:
            obj = Path(tmp) / (Path(source).stem + ".o")
            command = [
                *cc,
                *ccshared,
                *CFLAGS,
                f'-D{macro}="{source_hash(sources)}"',  # one argv item, no shell: quotes reach cc
                f"-I{include}",
                "-c",
                str(ROOT / source),
                "-o",
                str(obj),
            ]
            subprocess.run(command, check=True)
            objects.append(str(obj))
        partial = target.with_name(target.name + ".tmp")
        subprocess.run([*ldshared, *objects, "-o", str(partial)], check=True)
        partial.replace(target)  # atomic: a running interpreter never sees half a file


def build_all(in_place: bool, out_dir: Path | None = None) -> dict[str, Path]:
    """Compile every module; returns {wheel path: built file}. Failures warn unless required."""
    mode = os.environ.get("GOVERNED_NATIVE", "1")
    built: dict[str, Path] = {}
    if mode == "0":
        print("hatch_build: GOVERNED_NATIVE=0, C extensions skipped (pure-Python fallback)", file=sys.stderr)
        return built
    for name, sources in EXTENSIONS:
        target = in_place_path(name) if in_place else (out_dir or ROOT / "build") / module_path(name)
        try:
            compile_extension(name, sources, target)
        except (OSError, subprocess.CalledProcessError) as error:
            if mode == "require":
                raise
            print(
                f"hatch_build: WARNING: could not compile {name} ({error}); the pure-Python fallback "
                "will be used (slower). Set GOVERNED_NATIVE=require to make this an error.",
                file=sys.stderr,
            )
            continue
        built[module_path(name).as_posix()] = target
    return built


try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # running as a script without hatchling
    BuildHookInterface = object  # type: ignore[assignment,misc]


class CustomBuildHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    """Hatchling hook (``[tool.hatch.build.targets.wheel.hooks.custom]``)."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        if version == "editable":
            build_all(in_place=True)
            return
        self._tmp = tempfile.TemporaryDirectory()
        built = build_all(in_place=False, out_dir=Path(self._tmp.name))
        if built:
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
            for wheel_path, file in built.items():
                build_data["force_include"][str(file)] = wheel_path

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    for path, file in build_all(in_place=True).items():
        print(f"built {path} -> {file.relative_to(ROOT)}")
