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
MERGE_TAG = "tag:yaml.org,2002:merge"


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
        self._effective: dict[int, list[tuple[yaml.Node, yaml.Node]]] = {}
        self._resolving: set[int] = set()

    def _mark(self, node: yaml.Node) -> tuple[int, int]:
        return (node.start_mark.line + 1, node.start_mark.column + 1)

    def _problem(self, node: yaml.Node, message: str) -> None:
        line, col = self._mark(node)
        self.problems.append(Problem(self.file, line, col, message))

    def walk(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig(node.start_mark, f"document has more than {MAX_NODES:,} values "
                                           f"(after expanding aliases); refusing to load it")
        if depth > MAX_DEPTH:
            raise _TooBig(node.start_mark, f"document is nested deeper than {MAX_DEPTH} levels")
        self.marks[path] = self._mark(node)
        if isinstance(node, yaml.MappingNode):
            for extra in [k for k, _ in node.value if k.tag == MERGE_TAG][1:]:
                # PyYAML and other readers disagree on which of two `<<` keys wins
                self._problem(extra, "duplicate key '<<' (merge several mappings with one "
                                     "`<<: [*a, *b]`)")
            own = [pair for pair in node.value if pair[0].tag != MERGE_TAG]
            merged = self._effective_pairs(node)[len(own):]
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

    def _merged_pairs(self, node: yaml.MappingNode,
                      own: list[tuple[yaml.Node, yaml.Node]]) -> list[tuple[yaml.Node, yaml.Node]]:
        """The pairs a mapping gets from its ``<<`` merge keys, each key once, earlier
        sources winning (YAML merge-key semantics). PyYAML's own flattening copies pairs
        once per reference, which grows exponentially with nested merges; this resolves
        each merged mapping once and keeps only distinct keys."""
        seen = {_key_identity(k) for k, _ in own}
        result: list[tuple[yaml.Node, yaml.Node]] = []
        for knode, vnode in node.value:
            if knode.tag != MERGE_TAG:
                continue
            if isinstance(vnode, yaml.MappingNode):
                sources = [vnode]
            elif isinstance(vnode, yaml.SequenceNode) and all(
                    isinstance(item, yaml.MappingNode) for item in vnode.value):
                sources = list(vnode.value)
            else:
                self._problem(vnode, "invalid merge key: `<<` must be followed by a mapping "
                                     "or a list of mappings")
                continue
            for source in sources:
                for pair in self._effective_pairs(source):
                    ident = _key_identity(pair[0])
                    if ident not in seen:
                        seen.add(ident)
                        result.append(pair)
        return result

    def _effective_pairs(self, node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
        """A mapping's own pairs followed by its merged ones, computed once per node."""
        cached = self._effective.get(id(node))
        if cached is not None:
            return cached
        if id(node) in self._resolving:
            raise _TooBig(node.start_mark, "merge key refers to the mapping that contains it")
        self._resolving.add(id(node))
        try:
            own = [pair for pair in node.value if pair[0].tag != MERGE_TAG]
            pairs = own + self._merged_pairs(node, own)
        finally:
            self._resolving.discard(id(node))
        self.nodes += len(pairs) - len(own)
        if self.nodes > MAX_NODES:
            raise _TooBig(node.start_mark, f"document has more than {MAX_NODES:,} values "
                                           f"(after expanding merge keys); refusing to load it")
        self._effective[id(node)] = pairs
        return pairs

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


def _key_identity(knode: yaml.Node) -> tuple[str, str] | int:
    """What makes two mapping keys the same key, for merge de-duplication."""
    if isinstance(knode, yaml.ScalarNode):
        return (knode.tag, knode.value)
    return id(knode)


class _TooBig(Exception):
    def __init__(self, mark: yaml.Mark | None, message: str) -> None:
        super().__init__(message)
        self.where = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


class _BoundedLoader(yaml.SafeLoader):
    """Refuses, while composing, documents with too many nodes or too deep a nesting (the
    walk below bounds alias expansion; this bounds what PyYAML itself builds)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0
        self._depth = 0

    def _next_mark(self) -> yaml.Mark:
        return self.peek_event().start_mark  # type: ignore[no-untyped-call,no-any-return]

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _TooBig(self._next_mark(),
                          f"document has more than {MAX_NODES:,} values; refusing to load it")
        self._depth += 1
        try:
            # the root is at depth 0 in the walk below; only collections recurse
            if self._depth > MAX_DEPTH + 1 and self.check_event(yaml.MappingStartEvent,
                                                                 yaml.SequenceStartEvent):
                raise _TooBig(self._next_mark(),
                              f"document is nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def load_yaml(raw: bytes, file: str, what: str = "document") -> tuple[Located | None, list[Problem]]:
    """Parse ``raw`` strictly. Returns the located document (None if unusable) and problems."""
    if len(raw) > MAX_BYTES:
        return None, [Problem(file, 1, 1, f"{what} is {len(raw):,} bytes, larger than the limit "
                                          f"of {MAX_BYTES:,} bytes")]
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
        loader = _BoundedLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except _TooBig as exc:
        return None, [Problem(file, *exc.where, str(exc))]
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
        return None, [Problem(file, *exc.where, str(exc))]
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
