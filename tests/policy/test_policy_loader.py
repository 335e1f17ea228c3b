"""Policy loading: valid files load; every malformed file is refused with file:line:column and a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from governed_kernel.policy import PolicyError, load_policy, load_policy_text, policy_version
from governed_kernel.policy.loader import policy_schema
from governed_kernel.resources import policies_dir

BASE = """\
schema_version: 1
name: test
mode: enforce
roles:
  analysts: {users: [ana], groups: [analysts]}
  approvers: {users: [bob], groups: []}
  auditors: {groups: [qsa]}
approvals:
  required_approvers: 2
  pending_ttl_minutes: 30
  validity: window
  window_minutes: 15
audit:
  retention_days: 400
  checkpoint_interval_minutes: 10
masking:
  reveal: last4
  pan_columns: ["(?i)pan$"]
  extra_brands:
    - {name: Local, prefixes: ["6011", "622126-622925"], lengths: [16]}
rules:
  - id: shell
    description: Shell commands.
    pci: ["7.2.1"]
    action: approve
    match:
      magics: [bash]
"""


def load(text: str) -> object:
    return load_policy_text(text, "p.yaml")


def refused(text: str) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        load(text)
    return caught.value


def test_bundled_policies_load() -> None:
    for name in ("pci-dss.yaml", "examples/observe.yaml", "examples/strict.yaml"):
        policy = load_policy(policies_dir() / name)
        assert policy.version.startswith("sha256:") and len(policy.version) == 71
        assert policy.audit.retention_days >= 365
    default = load_policy(policies_dir() / "pci-dss.yaml")
    assert default.mode == "enforce" and default.rule("control-tampering").action == "deny"
    assert load_policy(policies_dir() / "examples/observe.yaml").mode == "observe"
    strict = load_policy(policies_dir() / "examples/strict.yaml")
    assert strict.approvals.validity == "once" and strict.approvals.required_approvers == 2


def test_base_policy_model() -> None:
    policy = load(BASE)
    assert policy.roles.analysts.users == ("ana",) and policy.roles.auditors.groups == ("qsa",)  # type: ignore[attr-defined]
    assert policy.approvals.window_minutes == 15  # type: ignore[attr-defined]
    assert policy.masking["extra_brands"][0]["prefixes"] == ["6011", "622126-622925"]  # type: ignore[attr-defined]


def test_schema_is_valid_json_schema() -> None:
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(policy_schema())
    assert json.loads((policies_dir() / "schema.json").read_text())["additionalProperties"] is False


def test_version_ignores_comments_order_and_whitespace() -> None:
    reordered = BASE.replace("name: test\nmode: enforce\n", "mode: enforce\n# a comment\nname:   test\n")
    assert load(reordered).version == load(BASE).version  # type: ignore[attr-defined]
    changed = BASE.replace("retention_days: 400", "retention_days: 401")
    assert load(changed).version != load(BASE).version  # type: ignore[attr-defined]
    assert policy_version({"b": 1, "a": [1, 2]}) == policy_version({"a": [1, 2], "b": 1})


# (description, text, expected "line:column", words that must be in the message)
MALFORMED: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("bad YAML", BASE.replace("  validity: window", "  validity: [window"), "12:", ("not valid YAML",)),
    ("tab indentation", BASE.replace("  reveal: last4", "\treveal: last4"), "17:1", ("not valid YAML",)),
    ("empty file", "", "1:1", ("empty",)),
    ("not a mapping", "- a\n- b\n", "1:1", ("expected a mapping",)),
    ("unknown top key", BASE + "colour: red\n", "28:1", ("unknown key 'colour'", "allowed keys", "rules")),
    (
        "unknown nested key",
        BASE.replace("  retention_days: 400", "  retention_days: 400\n  retension: 3"),
        "15:3",
        ("unknown key 'retension'", "retention_days"),
    ),
    (
        "unknown rule key",
        BASE.replace("    action: approve", "    action: approve\n    severity: high"),
        "26:5",
        ("unknown key 'severity'", "action"),
    ),
    (
        "unknown match key",
        BASE.replace("      magics: [bash]", "      magic: [bash]"),
        "27:7",
        ("unknown key 'magic'", "magics"),
    ),
    (
        "wrong type int",
        BASE.replace("required_approvers: 2", "required_approvers: two"),
        "9:23",
        ("expected an integer", "'two'"),
    ),
    ("wrong type list", BASE.replace('pci: ["7.2.1"]', "pci: 7.2.1"), "24:10", ("expected a list",)),
    (
        "bool for int",
        BASE.replace("pending_ttl_minutes: 30", "pending_ttl_minutes: yes"),
        "10:24",
        ("expected an integer", "boolean"),
    ),
    (
        "bad enum",
        BASE.replace("action: approve", "action: maybe"),
        "25:13",
        ("'maybe' is not allowed", "allow, approve, deny"),
    ),
    ("bad mode", BASE.replace("mode: enforce", "mode: audit"), "3:7", ("enforce, observe",)),
    ("bad reveal", BASE.replace("reveal: last4", "reveal: first6"), "17:11", ("last4, bin6, none",)),
    (
        "retention under 365",
        BASE.replace("retention_days: 400", "retention_days: 90"),
        "14:19",
        ("at least 365", "10.5.1"),
    ),
    (
        "missing key",
        BASE.replace("  checkpoint_interval_minutes: 10\n", ""),
        "14:3",
        ("missing required key 'checkpoint_interval_minutes'",),
    ),
    ("missing section", BASE.replace("mode: enforce\n", ""), "1:1", ("missing required key 'mode'",)),
    (
        "bad regex",
        BASE.replace('"(?i)pan$"', '"(?i)pan[0-9"'),
        "18:17",
        ("not a valid regular expression", "unterminated character set"),
    ),
    ("bad prefix", BASE.replace('"622126-622925"', '"62x"'), "20:40", ("does not have the allowed form",)),
    ("reversed range", BASE.replace('"622126-622925"', '"622925-622126"'), "20:40", ("low before high",)),
    ("bad length", BASE.replace("lengths: [16]", "lengths: [25]"), "20:68", ("at most 19",)),
    (
        "mask_char too long",
        BASE.replace("reveal: last4", "reveal: last4\n  mask_char: '**'"),
        "18:14",
        ("too long",),
    ),
    ("duplicate key", BASE.replace("name: test\n", "name: test\nname: other\n"), "3:1", ("duplicate key",)),
    ("duplicate rule id", BASE + BASE[BASE.index("  - id: shell") :], "28:9", ("already used by rules[0]",)),
    (
        "window without minutes",
        BASE.replace("  window_minutes: 15\n", ""),
        "11:13",
        ("needs window_minutes",),
    ),
    ("once with minutes", BASE.replace("validity: window", "validity: once"), "12:19", ("only applies",)),
    (
        "empty match",
        BASE.replace("      magics: [bash]", "      {}").replace("    match:\n      {}", "    match: {}"),
        "26:12",
        ("must not be empty",),
    ),
    ("bad rule id", BASE.replace("id: shell", "id: Shell Rule"), "22:9", ("allowed form",)),
    (
        "schema version",
        BASE.replace("schema_version: 1", "schema_version: 2"),
        "1:17",
        ("only allowed value is 1",),
    ),
    ("bad dynamic kind", BASE.replace("magics: [bash]", "dynamic: [exec, pickle]"), "27:23", ("'pickle'",)),
    ("bad cidr", BASE + "runtime:\n  network_allow_hosts: ['10.0.0.0/33']\n", "29:25", ("not a valid IP",)),
    ("bad placeholder", BASE + "runtime:\n  write_allow_paths: ['{home}/x']\n", "29:23", ("{home}", "{cwd}")),
    ("bad dialect", BASE + "data:\n  sql_dialect: cobol\n", "29:16", ("unknown SQL dialect 'cobol'",)),
    (
        "python tag",
        BASE.replace("name: test", "name: !!python/object:os.system x"),
        "2:7",
        ("not valid YAML",),
    ),
]


@pytest.mark.parametrize(("case", "text", "where", "words"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_policy_is_located(case: str, text: str, where: str, words: tuple[str, ...]) -> None:
    error = refused(text)
    first = str(error.problems[0])
    assert first.startswith(f"p.yaml:{where}"), first
    assert str(error.location).startswith(f"p.yaml:{where}")
    for word in words:
        assert word in str(error), (word, str(error))


def test_all_problems_are_reported_in_file_order() -> None:
    text = BASE.replace("mode: enforce", "mode: nope").replace("retention_days: 400", "retention_days: 1")
    error = refused(text)
    assert [p.location.line for p in error.problems] == [3, 14]
    assert str(error).startswith("2 problems in policy p.yaml")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "missing.yaml")


def test_default_policy_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from governed_kernel.policy import load_default_policy

    path = tmp_path / "p.yaml"
    path.write_text(BASE.replace("name: test", "name: from-env"))
    monkeypatch.setenv("GOVERNED_POLICY", str(path))
    assert load_default_policy().name == "from-env"
    path.write_text("mode: [")
    with pytest.raises(PolicyError) as caught:
        load_default_policy()
    assert caught.value.location.file == str(path)
