"""Strict, bounded YAML loading that remembers where every value came from.

Used for the manifest and the sandbox state. PyYAML's safe loader parses; our own walk
over the composed node graph builds plain Python values so that we can

* reject duplicate mapping keys and non-string keys (PyYAML silently keeps the last one),
* remember the line/column and the source text of every value (``012345670123`` is an
  octal *number* to YAML 1.1: the error message must show what the user wrote),
* bound the work: file size, nesting depth and the number of values after alias expansion
  (a "billion laughs" document is refused, not expanded).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Problem

Path = tuple[str | int, ...]

MAX_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64


@dataclass(frozen=True)
class Located:
    """A loaded document plus where each value (and each mapping key) sits in the file."""

    file: str
    data: Any
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path, tuple[int, int]] = field(default_factory=dict)
    source_text: dict[Path, str] = field(default_factory=dict)

    def where(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """Line/column (1-based) of the value at ``path`` or of its nearest located parent."""
        table = self.key_marks if key else self.marks
        p = path
        while True:
            if p in table:
                return table[p]
            if p in self.marks:
                return self.marks[p]
            if not p:
                return (1, 1)
            p = p[:-1]

    def problem(self, path: Path, message: str, *, key: bool = False) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, message)

    def raw(self, path: Path) -> str | None:
        return self.source_text.get(path)


class _Walker:
    def __init__(self, file: str) -> None:
        self.file = file
        self.loader = yaml.SafeLoader("")
        self.marks: dict[Path, tuple[int, int]] = {}
        self.key_marks: dict[Path, tuple[int, int]] = {}
        self.source_text: dict[Path, str] = {}
        self.problems: list[Problem] = []
        self.nodes = 0

    def _mark(self, node: yaml.Node) -> tuple[int, int]:
        return (node.start_mark.line + 1, node.start_mark.column + 1)

    def _problem(self, node: yaml.Node, message: str) -> None:
        line, col = self._mark(node)
        self.problems.append(Problem(self.file, line, col, message))

    def walk(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig(node, f"document has more than {MAX_NODES:,} values "
                                f"(after expanding aliases); refusing to load it")
        if depth > MAX_DEPTH:
            raise _TooBig(node, f"document is nested deeper than {MAX_DEPTH} levels")
        self.marks[path] = self._mark(node)
        if isinstance(node, yaml.MappingNode):
            own = [pair for pair in node.value if pair[0].tag != "tag:yaml.org,2002:merge"]
            self.loader.flatten_mapping(node)  # resolves `<<` merge keys (merged pairs first)
            merged = node.value[: len(node.value) - len(own)]
            result: dict[str, Any] = {}
            # The mapping's own keys win over merged ones; only its own keys can collide.
            for pairs, is_own in ((own, True), (merged, False)):
                for knode, vnode in pairs:
                    key = self._key(knode)
                    if key is None:
                        continue
                    if key in result:
                        if is_own:
                            self._problem(knode, f"duplicate key {key!r}")
                        continue
                    self.key_marks[path + (key,)] = self._mark(knode)
                    result[key] = self.walk(vnode, path + (key,), depth + 1)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        self.source_text[path] = node.value
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node)
        except yaml.constructor.ConstructorError as exc:
            self._problem(node, f"cannot read value {node.value!r}: {_one_line(exc.problem)}")
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            # e.g. `!!int foo`, `!!timestamp nope`: PyYAML raises plain Python errors.
            self._problem(node, f"cannot read value {node.value!r} as {node.tag.rsplit(':', 1)[-1]}")
        return node.value

    def _key(self, knode: yaml.Node) -> str | None:
        if not isinstance(knode, yaml.ScalarNode):
            self._problem(knode, "mapping keys must be plain strings")
            return None
        key = self._scalar(knode)
        if not isinstance(key, str):
            self._problem(knode, f"mapping key {knode.value!r} was read by YAML as "
                                 f"{type(key).__name__}; quote it: \"{knode.value}\"")
            return None
        return key


class _TooBig(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def load_yaml(raw: bytes, file: str, what: str = "document") -> tuple[Located | None, list[Problem]]:
    """Parse ``raw`` strictly. Returns the located document (None if unusable) and problems."""
    if len(raw) > MAX_BYTES:
        return None, [Problem(file, 1, 1, f"{what} is {len(raw):,} bytes; the limit is "
                                          f"{MAX_BYTES:,} bytes")]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [Problem(file, line, col, f"{what} is not valid UTF-8 "
                                               f"(byte 0x{raw[exc.start]:02x})")]
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        return None, [Problem(file, line, 1, f"{what} contains a NUL character")]
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        msg = _one_line(exc.problem) or _one_line(exc.context) or "syntax error"
        return None, [Problem(file, line, col, f"invalid YAML: {msg}")]
    except yaml.YAMLError as exc:
        return None, [Problem(file, 1, 1, f"invalid YAML: {_one_line(str(exc))}")]
    except RecursionError:
        return None, [Problem(file, 1, 1, f"{what} is nested too deeply")]
    if node is None:
        return None, [Problem(file, 1, 1, f"{what} is empty")]
    walker = _Walker(file)
    try:
        data = walker.walk(node, (), 0)
    except _TooBig as exc:
        line, col = walker._mark(exc.node)
        return None, [Problem(file, line, col, str(exc))]
    except RecursionError:
        return None, [Problem(file, 1, 1, f"{what} is nested too deeply")]
    located = Located(file, data, walker.marks, walker.key_marks, walker.source_text)
    return located, walker.problems


def iter_paths(data: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every (path, value) pair of a plain document, depth first."""
    yield path, data
    if isinstance(data, dict):
        for k, v in data.items():
            yield from iter_paths(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from iter_paths(v, path + (i,))
