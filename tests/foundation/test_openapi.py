"""The committed OpenAPI document is the one the code generates, and it is a valid OpenAPI 3.1 file."""

from __future__ import annotations

import json
from pathlib import Path

from governed_server.openapi import build
from governed_server.service.handlers import default_handlers


def test_docs_openapi_json_is_up_to_date(repo_root: Path) -> None:
    committed = json.loads((repo_root / "docs" / "openapi.json").read_text())
    assert committed == build(), "regenerate: python -m governed_server.openapi > docs/openapi.json"


def test_every_route_and_body_schema_is_documented() -> None:
    document = build()
    assert document["openapi"] == "3.1.0"
    assert len(document["paths"]) == len(default_handlers())
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["summary"], (method, path)
            if method == "post":
                assert "requestBody" in operation, path
