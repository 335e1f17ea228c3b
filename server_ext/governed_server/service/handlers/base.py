"""Base classes of the governance handlers: authentication, JSON in and out, errors as JSON.

Two kinds of caller:

- people, authenticated by jupyter_server's identity provider and authorized by its authorizer
  (``@web.authenticated`` + ``@authorized`` on every method of :class:`GovernanceHandler`), then
  checked against the policy's roles;
- kernels, authenticated by their per-kernel credential (``Authorization: GovernedKernel <token>``,
  :class:`KernelHandler`); the server's authorizer knows nothing of kernels, so these handlers
  authorize themselves: a kernel acts only for itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Protocol

import fastjsonschema
from jsonschema import Draft202012Validator
from jupyter_server.auth.identity import User
from jupyter_server.base.call_context import CallContext
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from governed_kernel.masking import MaskingError, default_masker
from governed_server.approval_model import ApprovalError
from governed_server.identity import KernelPrincipal, Person, Role
from governed_server.names import AUTH_SCHEME, REVOKED_MESSAGE
from governed_server.offload import offload

if TYPE_CHECKING:
    from governed_server.service.governance import GovernanceService


class ApiHost(Protocol):
    """What the API handlers need of the extension serving them (``settings["governed_server"]``)."""

    service: GovernanceService | None
    unavailable_reason: str
    db_url: str

    @property
    def policy_file(self) -> Path: ...
    def jail_report(self) -> dict[str, Any]: ...
    def hardening_report(self) -> dict[str, Any]: ...
    def roles_rule(self) -> str: ...


AUTH_RESOURCE = "governance"
"""The resource name that jupyter_server authorizers see for every governance endpoint."""
MAX_BODY = 8 * 1024 * 1024


SAME_IN_DRAFT7 = frozenset({
    "additionalProperties", "anyOf", "const", "enum", "items", "maxItems", "maxLength", "maximum",
    "minItems", "minLength", "minimum", "pattern", "properties", "required", "type",
})  # fmt: skip
"""Keywords whose meaning is the same in draft 7 (fastjsonschema) and 2020-12 (jsonschema)."""


@dataclass(frozen=True)
class _BodyValidator:
    schema: dict[str, Any]
    full: Draft202012Validator
    fast: Callable[[Any], Any] | None


_VALIDATORS: dict[int, _BodyValidator] = {}


def body_problem(schema: dict[str, Any], body: Any) -> str | None:
    """Why ``body`` does not satisfy ``schema`` (``"field/path: message"``), or None when it does.

    Validators are built once per schema. Valid bodies (the common case: every audit record of
    every cell) are checked by fastjsonschema's compiled validator when the schema uses only
    keywords that mean the same in its draft 7; a body it rejects, or any body of another schema, is
    judged by jsonschema's 2020-12 validator, which also names the offending field.
    """
    validator = _VALIDATORS.get(id(schema))
    if validator is None or validator.schema is not schema:
        fast = None
        if _keywords(schema) <= SAME_IN_DRAFT7:
            fast = fastjsonschema.compile({**schema, "$schema": "http://json-schema.org/draft-07/schema#"})
        validator = _VALIDATORS[id(schema)] = _BodyValidator(schema, Draft202012Validator(schema), fast)
    if validator.fast is not None:
        try:
            validator.fast(body)
            return None
        except fastjsonschema.JsonSchemaException:
            pass
    errors = sorted(validator.full.iter_errors(body), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    first = errors[0]
    where = "/".join(str(p) for p in first.absolute_path) or "body"
    return masked_message(f"{where}: {first.message}")


def masked_message(message: str) -> str:
    """An error message with any card number masked: messages quote what the client sent (jsonschema
    shows the offending value), and tornado logs the message of every HTTP error."""
    try:
        return str(default_masker().mask_text(message)[0])
    except MaskingError:
        return "the request was refused (its details could not be masked)"


def _keywords(schema: Any) -> set[str]:
    """Every keyword used in ``schema`` (property names under ``properties`` are not keywords)."""
    found: set[str] = set()
    if isinstance(schema, dict):
        for key, value in schema.items():
            found.add(key)
            if key == "properties" and isinstance(value, dict):
                for sub in value.values():
                    found |= _keywords(sub)
            elif isinstance(value, (dict, list)):
                found |= _keywords(value)
    elif isinstance(schema, list):
        for item in schema:
            found |= _keywords(item)
    return found - {"$schema", "description", "title"}


class _JSONHandler(ExtensionHandlerMixin, APIHandler):
    """JSON bodies validated against a schema; rule errors mapped to HTTP statuses."""

    body_schemas: ClassVar[dict[str, dict[str, Any]]] = {}
    """HTTP method → JSON Schema of its body; used to validate and to write the OpenAPI document."""

    def initialize(self, name: str = "governed_server", *args: Any, **kwargs: Any) -> None:
        super().initialize(name, *args, **kwargs)

    @property
    def governance(self) -> ApiHost:
        app: ApiHost = self.settings["governed_server"]
        return app

    @property
    def service(self) -> GovernanceService:
        """The running service, or 503 with the reason it is not running (bad policy, store down)."""
        service = self.governance.service
        if service is None:
            self.fail(503, f"the governance service is not available: {self.governance.unavailable_reason}")
        return service

    def fail(self, status: int, message: str) -> NoReturn:
        raise web.HTTPError(status, masked_message(message), reason=None)

    def json_body(self) -> dict[str, Any]:
        """The request body as a dict that satisfies the method's schema, else 400 naming the bad field."""
        schema = self.body_schemas[str(self.request.method).lower()]
        if len(self.request.body) > MAX_BODY:
            self.fail(413, f"the body is larger than {MAX_BODY} bytes")
        try:
            body = json.loads(self.request.body or b"null")
        except (ValueError, UnicodeDecodeError) as error:
            self.fail(400, f"the body is not valid JSON: {error}")
        problem = body_problem(schema, body)
        if problem:
            self.fail(400, problem)
        result: dict[str, Any] = body
        return result

    def query_int(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.fail(400, f"query parameter {name!r} must be an integer")
        if not low <= value <= high:
            self.fail(400, f"query parameter {name!r} must be between {low} and {high}")
        return value

    def reply(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        error = exc_info[1] if exc_info else None
        if isinstance(error, ApprovalError):
            self.set_status(error.status)
            status_code = error.status
            message = error.message
        elif isinstance(error, web.HTTPError) and error.log_message:
            message = error.log_message % error.args if error.args else error.log_message
        elif status_code >= 500:
            self.log.error("governance API error", exc_info=exc_info)
            message = "internal error in the governance service; the server log has the details"
        else:
            message = self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, ApprovalError):
            request = self.request
            self.log.info("governance: %s %s → %s %s", request.method, request.path, value.status, value)
            return
        super().log_exception(typ, value, tb)


class GovernanceHandler(_JSONHandler):
    """Endpoints for people; each method carries ``@web.authenticated`` and ``@authorized``."""

    auth_resource = AUTH_RESOURCE

    def person(self) -> Person:
        return self.service.roles.person(self.current_user)

    def require_role(self, person: Person, *roles: Role) -> None:
        if not any(self.service.roles.has_role(person, role) for role in roles):
            names = " or ".join(roles)
            self.fail(403, f"{person.username} is not an {names} in the governance policy")


class KernelHandler(_JSONHandler):
    """Endpoints for kernels: authenticated by the per-kernel credential, never by a user token."""

    kernel: KernelPrincipal
    kernel_token: str

    async def prepare(self) -> None:  # type: ignore[override]
        CallContext.set(CallContext.JUPYTER_HANDLER, self)
        if not self.check_host():
            self.fail(403, "host not allowed")
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if scheme != AUTH_SCHEME or not token.strip():
            self.current_user = self._jupyter_current_user = None
            self.fail(401, f"this endpoint needs a kernel credential (Authorization: {AUTH_SCHEME} <token>)")
        self.kernel_token = token.strip()
        principal = await offload(self.service.credentials.resolve, self.kernel_token)
        if principal is None:
            self.current_user = self._jupyter_current_user = None
            self.fail(403, REVOKED_MESSAGE)
        self.kernel = principal
        self.current_user = self._jupyter_current_user = User(
            username=principal.username, name=f"kernel {principal.kernel_id}"
        )

    def check_xsrf_cookie(self) -> None:
        """The credential travels in a header, never in a cookie: no cross-site request can carry it."""
        return None
