"""Governance policy: loading and validation, static cell classification, runtime enforcement.

Pure logic with no Jupyter imports (IPython only to transform magics, lazily), shared by the kernel,
the server and the ``jupyter governance policy`` CLI. Typical use in the kernel::

    policy = load_default_policy()          # PolicyError → no cell runs (fail closed)
    classifier = Classifier(policy)
    decision = classifier.classify(cell, aliases_from_namespace(shell.user_ns))
    guard = RuntimeGuard(policy, on_violation=record)
    with guard.activate():                  # only for cells that were not approved
        run_the_cell()
"""

from governed_kernel.policy.classifier import (
    Classifier,
    aliases_from_namespace,
    classify,
    fresh_kernel_aliases,
)
from governed_kernel.policy.decision import Decision, Finding, Span
from governed_kernel.policy.errors import Location, PolicyError, Problem
from governed_kernel.policy.loader import load_default_policy, load_policy, load_policy_text, policy_version
from governed_kernel.policy.model import Policy, Rule
from governed_kernel.policy.runtime import RuntimeGuard, Violation, attach_to_shell

__all__ = [
    "Classifier",
    "Decision",
    "Finding",
    "Location",
    "Policy",
    "PolicyError",
    "Problem",
    "Rule",
    "RuntimeGuard",
    "Span",
    "Violation",
    "aliases_from_namespace",
    "attach_to_shell",
    "classify",
    "fresh_kernel_aliases",
    "load_default_policy",
    "load_policy",
    "load_policy_text",
    "policy_version",
]
