"""Read operator-written YAML (gate policies, behavioral suites) with errors that name the file and line.

PyYAML's composed node tree keeps the position of every value, so values are checked node by node here
instead of after ``safe_load`` has thrown the positions away.
"""

from __future__ import annotations

from typing import Any, NoReturn

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from deskpilot.errors import ConfigError


class YamlReader:
    """Checked values from YAML nodes; every failure raises ``error`` as ``source:line: message``."""

    def __init__(self, source: str, error: type[ConfigError]) -> None:
        self.source = source
        self.error = error

    def compose(self, text: str, what: str) -> Node:
        """The document's root node; invalid YAML and an empty document are errors too."""
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 1
            context, problem = getattr(exc, "context", None), getattr(exc, "problem", None) or exc
            if isinstance(context, str) and context.startswith("expected"):  # "expected a single document"
                problem = f"{context} {problem}"
            raise self.error(
                f"{self.source}:{line}: not valid YAML: {problem}",
                details={"file": self.source, "line": line},
            ) from exc
        if root is None:
            raise self.error(f"{self.source}:1: {what} is empty", details={"file": self.source, "line": 1})
        return root

    @staticmethod
    def line(node: Node) -> int:
        return int(node.start_mark.line) + 1

    def fail(self, node: Node, message: str) -> NoReturn:
        line = self.line(node)
        raise self.error(f"{self.source}:{line}: {message}", details={"file": self.source, "line": line})

    def entries(self, node: Node, what: str) -> dict[str, tuple[Node, Node]]:
        """Key name -> (key node, value node) of a mapping with plain, distinct keys."""
        if not isinstance(node, MappingNode):
            self.fail(node, f"{what} must be a mapping of names to values")
        found: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.fail(key_node, f"keys of {what} must be plain names")
            key = str(key_node.value)
            if key in found:
                self.fail(key_node, f"{key!r} appears twice in {what}")
            found[key] = (key_node, value_node)
        return found

    def mapping(self, node: Node, what: str, *, allowed: set[str] | frozenset[str]) -> dict[str, Node]:
        """Key name -> value node, refusing keys outside ``allowed``."""
        values = {}
        for key, (key_node, value_node) in self.entries(node, what).items():
            if key not in allowed:
                self.fail(key_node, f"unknown key {key!r} in {what}; allowed: {', '.join(sorted(allowed))}")
            values[key] = value_node
        return values

    def sequence(self, node: Node, what: str) -> list[Node]:
        if not isinstance(node, SequenceNode) or not node.value:
            self.fail(node, f"{what} must be a non-empty list")
        return list(node.value)

    def scalar(self, node: Node, what: str) -> Any:
        if not isinstance(node, ScalarNode):
            self.fail(node, f"{what} must be a single value")
        return yaml.safe_load(yaml.serialize(node))

    def text(self, node: Node, what: str) -> str:
        value = self.scalar(node, what)
        if not isinstance(value, str) or not value.strip():
            self.fail(
                node, f"{what} must be non-empty text, not {value!r} (quote values YAML reads as numbers)"
            )
        return value

    def number(self, node: Node, what: str) -> float:
        value = self.scalar(node, what)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(node, f"{what} must be a number, not {value!r}")
        return float(value)

    def integer(self, node: Node, what: str, *, minimum: int) -> int:
        value = self.scalar(node, what)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.fail(node, f"{what} must be a whole number of at least {minimum}, not {value!r}")
        return int(value)

    def fraction(self, node: Node, what: str, *, open_zero: bool = False) -> float:
        value = self.number(node, what)
        if value > 1.0 or value < 0.0 or (open_zero and value == 0.0):
            self.fail(node, f"{what} must be between 0 and 1, not {value}")
        return value

    def boolean(self, node: Node, what: str) -> bool:
        value = self.scalar(node, what)
        if not isinstance(value, bool):
            self.fail(node, f"{what} must be true or false, not {value!r}")
        return bool(value)

    def choice(self, node: Node, what: str, allowed: frozenset[str] | set[str]) -> str:
        value = self.scalar(node, what)
        if value not in allowed:
            self.fail(node, f"{what} must be one of {', '.join(sorted(allowed))}, not {value!r}")
        return str(value)
