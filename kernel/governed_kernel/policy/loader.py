"""Load a policy file: located YAML → JSON Schema → semantic checks → :class:`Policy`.

Every problem is reported with ``file:line:column``, what is wrong and what is allowed; unknown keys
are errors (a misspelt key must not silently weaken a control). The policy version is the SHA-256 of
the canonical JSON of the document, so comments and key order do not change it.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from governed_kernel.policy.errors import Location, PolicyError, Problem
from governed_kernel.policy.located_yaml import LocatedDocument, format_path, parse_located_yaml
from governed_kernel.policy.model import (
    Approvals,
    AuditSettings,
    DataRules,
    Match,
    Members,
    Policy,
    RequestSettings,
    Roles,
    Rule,
    RuntimeSettings,
    SessionSettings,
)
from governed_kernel.resources import default_policy_path, policies_dir

SCHEMA_NAME = "schema.json"
_PATH_PLACEHOLDERS = ("{cwd}", "{tmp}")


@functools.lru_cache(maxsize=1)
def policy_schema() -> dict[str, Any]:
    """The bundled JSON Schema (``policies/schema.json``); missing schema fails closed."""
    path = policies_dir() / SCHEMA_NAME
    try:
        return cast(dict[str, Any], json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as error:
        raise PolicyError(
            [
                Problem(
                    Location(str(path)),
                    "",
                    f"cannot read the policy schema: {error}; reinstall governed-kernel",
                )
            ]
        ) from None


def policy_version(data: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON form (sorted keys, no whitespace, UTF-8)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_policy(path: str | Path) -> Policy:
    """Load and validate the policy at ``path``; raise :class:`PolicyError` if it cannot be used."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise PolicyError(
            [
                Problem(
                    Location(file),
                    "",
                    f"cannot read the policy file: {reason}; set GOVERNED_POLICY to a readable policy file",
                )
            ]
        ) from None
    return load_policy_text(text, file)


def load_default_policy() -> Policy:
    """The configured policy (``GOVERNED_POLICY``) or the bundled PCI DSS policy."""
    return load_policy(default_policy_path())


def load_policy_text(text: str, file: str = "<policy>") -> Policy:
    """Validate policy YAML given as text; ``file`` names it in error locations."""
    document = parse_located_yaml(text, file)
    problems = list(_schema_problems(document, file))
    if not problems:
        problems = list(_semantic_problems(document, file))
    if problems:
        raise PolicyError(problems)
    return _build(document.data, policy_version(document.data), file)


# --- schema errors, rewritten for humans -------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "nothing (null)" if value is None else type(value).__name__


_EXPECTED = {
    "string": "text",
    "integer": "an integer",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping of keys",
    "number": "a number",
}


def _schema_problems(document: LocatedDocument, file: str) -> Iterable[Problem]:
    validator = Draft202012Validator(policy_schema())
    for error in validator.iter_errors(document.data):
        yield from _explain(error, document, file)


def _explain(error: ValidationError, document: LocatedDocument, file: str) -> Iterable[Problem]:
    path = tuple(error.absolute_path)
    where = document.location(file, path)
    shown = format_path(path) or "(top level)"
    schema = error.schema if isinstance(error.schema, dict) else {}
    why = f" ({schema['description']})" if "description" in schema else ""
    kind = error.validator
    value: Any = error.instance
    expected: Any = error.validator_value
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        for key in sorted(set(value) - set(allowed)):
            yield Problem(
                document.location(file, (*path, key), key=True),
                format_path((*path, key)),
                f"unknown key '{key}'; allowed keys here: {', '.join(allowed)}",
            )
        return
    if kind == "required":
        missing = [name for name in expected if name not in value]
        for name in missing:
            yield Problem(
                where, shown, f"missing required key '{name}'; required here: {', '.join(expected)}"
            )
        return
    if kind == "enum":
        choices = ", ".join(str(choice) for choice in expected)
        message = f"{value!r} is not allowed; allowed values: {choices}"
    elif kind == "const":
        message = f"{value!r} is not supported; the only allowed value is {expected!r}"
    elif kind == "type":
        expected = _EXPECTED.get(str(expected), str(expected))
        message = f"expected {expected}, found {_type_name(value)} {value!r}"
    elif kind == "minimum":
        message = f"{value} is too small; allowed: at least {expected}{why}"
    elif kind == "maximum":
        message = f"{value} is too large; allowed: at most {expected}{why}"
    elif kind == "minItems":
        message = f"needs at least {expected} item(s), found {len(value)}"
    elif kind == "minLength":
        message = f"{value!r} is too short; allowed: at least {expected} character(s)"
    elif kind == "maxLength":
        message = f"{value!r} is too long; allowed: at most {expected} character(s)"
    elif kind == "minProperties":
        keys = ", ".join(sorted(schema.get("properties", {})))
        message = f"must not be empty; give at least one of: {keys}"
    elif kind == "pattern":
        message = f"{value!r} does not have the allowed form (regular expression {expected})"
    else:
        message = error.message
    yield Problem(where, shown, message)


# --- checks JSON Schema cannot express -------------------------------------------------------------------


def _semantic_problems(document: LocatedDocument, file: str) -> Iterable[Problem]:
    data: dict[str, Any] = document.data

    def at(*path: str | int) -> tuple[Location, str]:
        return document.location(file, path), format_path(path)

    seen: dict[str, int] = {}
    for index, rule in enumerate(data["rules"]):
        if rule["id"] in seen:
            yield Problem(
                *at("rules", index, "id"),
                f"rule id '{rule['id']}' is already used by "
                f"rules[{seen[rule['id']]}]; rule ids must be unique",
            )
        seen.setdefault(rule["id"], index)

    approvals = data["approvals"]
    if approvals["validity"] == "window" and "window_minutes" not in approvals:
        yield Problem(
            *at("approvals", "validity"),
            "validity 'window' needs window_minutes (minutes an approval stays valid for re-runs)",
        )
    if approvals["validity"] == "once" and "window_minutes" in approvals:
        yield Problem(
            *at("approvals", "window_minutes"),
            "window_minutes only applies when validity is 'window'; remove it or set validity: window",
        )

    masking = data.get("masking", {})
    for key in ("full_mask_columns", "pan_columns"):
        for index, pattern in enumerate(masking.get(key, [])):
            try:
                re.compile(pattern)
            except re.error as error:
                yield Problem(
                    *at("masking", key, index),
                    f"{pattern!r} is not a valid regular expression: {error.msg} at position {error.pos}",
                )
    for b_index, brand in enumerate(masking.get("extra_brands", [])):
        for p_index, prefix in enumerate(brand["prefixes"]):
            low, _, high = prefix.partition("-")
            if high and (len(low) != len(high) or int(low) > int(high)):
                yield Problem(
                    *at("masking", "extra_brands", b_index, "prefixes", p_index),
                    f"range {prefix!r} must have two bounds of the same length, low before high "
                    "(e.g. '622126-622925')",
                )

    dialect = data.get("data", {}).get("sql_dialect")
    if dialect is not None:
        from sqlglot.dialects.dialect import Dialect

        try:
            Dialect.get_or_raise(dialect)
        except ValueError:
            yield Problem(
                *at("data", "sql_dialect"),
                f"unknown SQL dialect {dialect!r}; use a sqlglot "
                "dialect name such as postgres, mysql, snowflake, bigquery, duckdb, tsql",
            )

    runtime = data.get("runtime", {})
    for index, host in enumerate(runtime.get("network_allow_hosts", [])):
        if "/" in host or host.replace(".", "").isdigit() or ":" in host:
            try:
                ipaddress.ip_network(host, strict=False)
            except ValueError as error:
                yield Problem(
                    *at("runtime", "network_allow_hosts", index),
                    f"{host!r} is not a valid IP address or network: {error}",
                )
    for index, folder in enumerate(runtime.get("write_allow_paths", [])):
        for placeholder in re.findall(r"\{[^}]*\}", folder):
            if placeholder not in _PATH_PLACEHOLDERS:
                yield Problem(
                    *at("runtime", "write_allow_paths", index),
                    f"unknown placeholder "
                    f"{placeholder}; allowed: {', '.join(_PATH_PLACEHOLDERS)} and a leading ~",
                )


# --- building the model ----------------------------------------------------------------------------------


def _members(raw: Mapping[str, Any]) -> Members:
    return Members(users=tuple(raw.get("users", ())), groups=tuple(raw.get("groups", ())))


def _build(data: dict[str, Any], version: str, file: str) -> Policy:
    roles = data["roles"]
    approvals = data["approvals"]
    audit = data["audit"]
    section = data.get("data", {})
    runtime = data.get("runtime", {})
    defaults_data = DataRules()
    defaults_runtime = RuntimeSettings()
    rules = tuple(
        Rule(
            id=raw["id"],
            description=raw["description"],
            pci=tuple(raw["pci"]),
            action=raw["action"],
            match=Match(**{key: tuple(value) for key, value in raw["match"].items()}),
        )
        for raw in data["rules"]
    )
    return Policy(
        name=data["name"],
        description=data.get("description", ""),
        mode=data["mode"],
        roles=Roles(_members(roles["analysts"]), _members(roles["approvers"]), _members(roles["auditors"])),
        approvals=Approvals(
            required_approvers=approvals["required_approvers"],
            pending_ttl_minutes=approvals["pending_ttl_minutes"],
            validity=approvals["validity"],
            window_minutes=approvals.get("window_minutes"),
        ),
        data=DataRules(
            cardholder_tables=tuple(section.get("cardholder_tables", defaults_data.cardholder_tables)),
            cardholder_columns=tuple(section.get("cardholder_columns", defaults_data.cardholder_columns)),
            sql_dialect=section.get("sql_dialect"),
        ),
        audit=AuditSettings(audit["retention_days"], audit["checkpoint_interval_minutes"]),
        runtime=RuntimeSettings(
            network_allow_hosts=tuple(
                runtime.get("network_allow_hosts", defaults_runtime.network_allow_hosts)
            ),
            write_allow_paths=tuple(runtime.get("write_allow_paths", defaults_runtime.write_allow_paths)),
        ),
        rules=rules,
        version=version,
        source=file,
        masking=data.get("masking", {}),
        sessions=SessionSettings(share_kernels=bool(data.get("sessions", {}).get("share_kernels", False))),
        requests=_requests(data.get("requests", {})),
    )


def _requests(raw: Mapping[str, Any]) -> RequestSettings:
    defaults = RequestSettings()
    return RequestSettings(
        comm_targets=tuple(raw.get("comm_targets", defaults.comm_targets)),
        allow_debugger=bool(raw.get("allow_debugger", defaults.allow_debugger)),
        allow_subshells=bool(raw.get("allow_subshells", defaults.allow_subshells)),
        require_guard=bool(raw.get("require_guard", defaults.require_guard)),
    )
