"""Request bodies: the fast validator (fastjsonschema) never accepts what the reference rejects.

Every kernel message is validated; valid bodies take fastjsonschema's compiled check, which is only
used for schemas whose keywords mean the same in its draft 7 as in jsonschema's 2020-12. Random
bodies shaped like the real ones, valid and broken, must get the same verdict from both.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from governed_server.service.handlers import default_handlers
from governed_server.service.handlers.base import _VALIDATORS, SAME_IN_DRAFT7, _keywords, body_problem
from governed_server.service.handlers.schemas import AUDIT_INGEST

SCHEMAS = {
    f"{handler.__name__}.{method}": schema
    for _pattern, handler in default_handlers()
    for method, schema in getattr(handler, "body_schemas", {}).items()
}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 2**60), st.floats(allow_nan=False),
    st.text(max_size=20), st.sampled_from(["cell.start", "cell.end", "shell.x", "a" * 64, "f" * 64, ""]),
)  # fmt: skip
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=8), inner, max_size=3), max_leaves=8)  # fmt: skip
FIELDS = [*AUDIT_INGEST["properties"]["records"]["items"]["properties"], "user", "x"]
records = st.dictionaries(st.sampled_from(FIELDS), values, max_size=6).map(
    lambda r: {"event_type": "cell.start", **r}
) | st.dictionaries(st.sampled_from(FIELDS), values, max_size=4)
bodies = st.one_of(
    st.fixed_dictionaries({"records": st.lists(records, max_size=4)}),
    st.dictionaries(st.sampled_from(["records", "id", "extra"]), values, max_size=3),
    values,
)


def test_every_body_schema_is_judged_and_the_audit_one_takes_the_fast_path() -> None:
    assert SCHEMAS, "no body schemas found"
    for name, schema in SCHEMAS.items():
        body_problem(schema, {})
        assert _VALIDATORS[id(schema)].schema is schema, name
    assert _keywords(AUDIT_INGEST) <= SAME_IN_DRAFT7
    assert _VALIDATORS[id(AUDIT_INGEST)].fast is not None


def test_a_schema_with_other_keywords_never_takes_the_fast_path() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "array", "prefixItems": [{"type": "string"}]}}}
    assert body_problem(schema, {"a": [1]}) is not None  # prefixItems means nothing in draft 7
    assert _VALIDATORS[id(schema)].fast is None


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_fast_and_reference_validators_agree_on_audit_bodies(body: Any) -> None:
    reference_ok = Draft202012Validator(AUDIT_INGEST).is_valid(body)
    problem = body_problem(AUDIT_INGEST, body)
    assert (problem is None) == reference_ok, problem


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(SCHEMAS)), values)
def test_fast_and_reference_validators_agree_on_every_schema(name: str, body: Any) -> None:
    schema = SCHEMAS[name]
    assert (body_problem(schema, body) is None) == Draft202012Validator(schema).is_valid(body)
