"""YAML parsing that remembers where every key and value came from.

PyYAML's data loses positions; errors must point to ``file:line:column``, so the document is composed
into nodes and built here, keeping a path → position map. Duplicate keys (which PyYAML silently
overwrites) are reported, because a policy that says two things at once must not load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from governed_kernel.policy.errors import Location, Problem

Path = tuple[str | int, ...]


@dataclass
class LocatedDocument:
    """Plain data (dicts, lists, scalars) plus where each value and each mapping key starts."""

    data: Any
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def location(self, file: str, path: Path, *, key: bool = False) -> Location:
        """The position of the value at ``path`` (or of its key), falling back to the nearest parent."""
        table = self.keys if key else self.values
        probe = path
        while True:
            if probe in table:
                line, column = table[probe]
                return Location(file, line, column)
            if key and probe in self.values:
                line, column = self.values[probe]
                return Location(file, line, column)
            if not probe:
                return Location(file, 1, 1)
            probe = probe[:-1]


def format_path(path: Path) -> str:
    """``("rules", 2, "match")`` → ``rules[2].match``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, document: LocatedDocument, file: str) -> None:
        self.loader = loader
        self.document = document
        self.file = file
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.document.values[path] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    self.problems.append(
                        Problem(
                            Location(self.file, *_mark(key_node)),
                            format_path(path),
                            f"key {key!r} is not text; policy keys are names such as 'mode' or 'rules'",
                        )
                    )
                    continue
                child = (*path, key)
                if key in result:
                    self.problems.append(
                        Problem(
                            Location(self.file, *_mark(key_node)),
                            format_path(child),
                            "duplicate key: it is already set above; give each key once",
                        )
                    )
                    continue
                self.document.keys[child] = _mark(key_node)
                result[key] = self.build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's loader when PyYAML has it (the policy loads at every kernel start: ~10x faster), with
the same nodes, marks and errors; the pure-Python one otherwise."""


def parse_located_yaml(text: str, file: str) -> LocatedDocument:
    """Parse one YAML document; raise :class:`PolicyError` when it is not valid YAML."""
    from governed_kernel.policy.errors import PolicyError

    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PolicyError(
                [
                    Problem(
                        Location(file, 1, 1),
                        "",
                        "the policy file is empty; start from the bundled policies/pci-dss.yaml",
                    )
                ]
            )
        document = LocatedDocument(data=None)
        builder = _Builder(loader, document, file)
        document.data = builder.build(node, ())
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        what = " ".join(part for part in (error.context, error.problem) if part)
        raise PolicyError([Problem(where, "", f"not valid YAML: {what}")]) from None
    except yaml.YAMLError as error:
        raise PolicyError([Problem(Location(file), "", f"not valid YAML: {error}")]) from None
    finally:
        loader.dispose()
    if builder.problems:
        raise PolicyError(builder.problems)
    return document
