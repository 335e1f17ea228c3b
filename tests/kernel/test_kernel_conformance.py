"""The governed kernel still passes the public kernel conformance suite (jupyter_kernel_test).

Governance must not break the messaging protocol (DESIGN principle 9): execute, streams, errors,
results, display data, completion, inspection, is_complete, history, clear_output, pager. Values
are plain (no card numbers), so masking changes nothing the suite expects.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import jupyter_kernel_test
from governance_service import GovernanceService, write_test_policy  # type: ignore[import-not-found]
from jupyter_client.manager import start_new_kernel


class GovernedKernelConformance(jupyter_kernel_test.KernelTests):  # type: ignore[misc]
    kernel_name = "governed-python"
    language_name = "python"
    file_extension = ".py"

    service: ClassVar[GovernanceService]
    workdir: ClassVar[tempfile.TemporaryDirectory[str]]

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    completion_samples: ClassVar[list[dict[str, Any]]] = [
        {"text": "zi", "matches": {"zip"}},
    ]
    complete_code_samples: ClassVar[list[str]] = [
        "1",
        "print('hello, world')",
        "def f(x):\n  return x*2\n\n\n",
    ]
    incomplete_code_samples: ClassVar[list[str]] = ["print('''hello", "def f(x):\n  x*2"]
    invalid_code_samples: ClassVar[list[str]] = ["import = 7q"]
    code_page_something = "zip?"
    code_generate_error = "raise ValueError('conformance')"
    code_execute_result: ClassVar[list[dict[str, str]]] = [
        {"code": "1+2+3", "result": "6"},
        {"code": "[n*n for n in range(1, 4)]", "result": "[1, 4, 9]"},
    ]
    code_display_data: ClassVar[list[dict[str, str]]] = [
        {
            "code": "from IPython.display import HTML, display; display(HTML('<b>test</b>'))",
            "mime": "text/html",
        },
        {
            "code": "from IPython.display import Math, display; display(Math('\\\\frac{1}{2}'))",
            "mime": "text/latex",
        },
    ]
    code_history_pattern = "1?2*"
    supported_history_operations = ("tail", "search")
    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output; clear_output()"

    @classmethod
    def setUpClass(cls) -> None:
        cls.workdir = tempfile.TemporaryDirectory()
        root = Path(cls.workdir.name)
        cls.service = GovernanceService(
            root=root, policy_path=write_test_policy(root / "policy.yaml")
        ).start()
        env = {**os.environ, **cls.service.kernel_env("alice")}
        cls.km, cls.kc = start_new_kernel(kernel_name=cls.kernel_name, env=env)

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        cls.service.stop()
        cls.workdir.cleanup()
