"""Strict, bounded YAML loading (reconciler.core.yamlload.load_yaml): values, locations, refusals."""

from __future__ import annotations

import time

import pytest

from reconciler.core import yamlload
from reconciler.core.errors import Problem
from reconciler.core.yamlload import MAX_BYTES, MAX_DEPTH, MAX_NODES, iter_paths, load_yaml

F = "f.yaml"


def load(raw: bytes | str, what: str = "document"):
    if isinstance(raw, str):
        raw = raw.encode()
    return load_yaml(raw, F, what)


def only_problem(raw: bytes | str, what: str = "document") -> Problem:
    doc, problems = load(raw, what)
    assert doc is None, f"expected the document to be refused, got {doc.data!r}"
    assert len(problems) == 1, problems
    p = problems[0]
    assert p.file == F
    assert "\n" not in p.message
    return p


def billion_laughs() -> str:
    lines = ["a: &a [" + ", ".join(["lol"] * 9) + "]"]
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- accepted input


def test_plain_document_loads_with_marks_and_source_text():
    doc, problems = load("version: 1\nprincipals:\n  prod: \"111122223333\"\nids: [012345670123]\n")
    assert problems == []
    assert doc.data == {"version": 1, "principals": {"prod": "111122223333"},
                        "ids": [0o12345670123]}
    assert doc.where(("principals", "prod")) == (3, 9)
    assert doc.where(("principals", "prod"), key=True) == (3, 3)
    assert doc.where(("ids", 0)) == (4, 7)
    # what the user wrote, not what YAML made of it
    assert doc.raw(("ids", 0)) == "012345670123"
    assert doc.raw(("principals", "prod")) == "111122223333"
    # unknown paths fall back to the nearest located parent, then to 1:1
    assert doc.where(("principals", "nope", 3)) == (3, 3)  # the principals mapping itself
    assert doc.where(("zzz",)) == (1, 1)


def test_problem_helper_uses_value_location():
    doc, _ = load("a:\n  b: [x, y]\n")
    p = doc.problem(("a", "b", 1), "bad y")
    assert str(p) == "f.yaml:2:10: bad y"


def test_utf8_bom_is_accepted():
    doc, problems = load(b"\xef\xbb\xbfname: caf\xc3\xa9\n")
    assert problems == []
    assert doc.data == {"name": "café"}
    assert doc.where(("name",)) == (1, 7)


def test_merge_keys_are_resolved():
    doc, problems = load("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  z: 3\n")
    assert problems == []
    assert doc.data == {"base": {"x": 1, "y": 2}, "d": {"x": 1, "y": 2, "z": 3}}


def test_merge_key_in_sequence_item():
    doc, problems = load("defaults: &d {regions: [us-east-1]}\nitems:\n  - <<: *d\n    name: r\n")
    assert problems == []
    assert doc.data["items"] == [{"regions": ["us-east-1"], "name": "r"}]


def test_merge_key_override_is_not_a_duplicate():
    doc, problems = load("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n")
    assert problems == []
    assert doc.data["d"] == {"x": 1, "y": 3}


def test_two_merge_keys_in_one_mapping_are_a_duplicate():
    """YAML readers disagree on which `<<` wins (this loader took the first, PyYAML the
    last): a reviewer would read another manifest than the one applied."""
    _, problems = load("d:\n  <<: {x: 1}\n  <<: {x: 2}\n")
    assert [str(p) for p in problems] == [
        "f.yaml:3:3: duplicate key '<<' (merge several mappings with one `<<: [*a, *b]`)"]
    doc, problems = load("a: &a {x: 1}\nb: &b {y: 2}\nd:\n  <<: [*a, *b]\n")
    assert problems == [] and doc.data["d"] == {"x": 1, "y": 2}


def test_aliases_expand_to_equal_values():
    doc, problems = load("a: &l [1, 2]\nb: *l\n")
    assert problems == []
    assert doc.data == {"a": [1, 2], "b": [1, 2]}


def test_exactly_max_depth_is_accepted():
    # root sequence at depth 0, innermost (empty) sequence at depth MAX_DEPTH
    n = MAX_DEPTH + 1
    doc, problems = load("[" * n + "]" * n)
    assert problems == []
    inner = doc.data
    for _ in range(MAX_DEPTH):
        inner = inner[0]
    assert inner == []


def test_exactly_max_bytes_is_accepted(monkeypatch):
    monkeypatch.setattr(yamlload, "MAX_BYTES", 20)
    raw = b"a: " + b"x" * 16 + b"\n"
    assert len(raw) == 20
    doc, problems = load(raw)
    assert problems == [] and doc.data == {"a": "x" * 16}


def test_iter_paths_walks_depth_first():
    assert list(iter_paths({"a": [1, {"b": 2}]})) == [
        ((), {"a": [1, {"b": 2}]}),
        (("a",), [1, {"b": 2}]),
        (("a", 0), 1),
        (("a", 1), {"b": 2}),
        (("a", 1, "b"), 2),
    ]


# --------------------------------------------------------------------------- located problems


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a: 1\nb: 2\na: 3\n", ["f.yaml:3:1: duplicate key 'a'"]),
        ("a:\n  b: 1\n  c:\n    d: 1\n    d: 2\n", ["f.yaml:5:5: duplicate key 'd'"]),
        ("a: 1\r\nb: 2\r\nb: 3\r\n", ["f.yaml:3:1: duplicate key 'b'"]),
        ("x: 1\ny: 2\nx: 3\ny: 4\n",
         ["f.yaml:3:1: duplicate key 'x'", "f.yaml:4:1: duplicate key 'y'"]),
    ],
    ids=["top-level", "nested", "crlf-line-endings", "two-duplicates"],
)
def test_duplicate_keys_reported_with_line(raw, expected):
    doc, problems = load(raw)
    assert [str(p) for p in problems] == expected
    assert doc is not None  # the rest of the document is still usable for further checks


def test_duplicate_key_keeps_first_value():
    doc, problems = load("a: first\na: second\n")
    assert doc.data == {"a": "first"}
    assert [p.line for p in problems] == [2]


@pytest.mark.parametrize(
    ("raw", "line", "fragment"),
    [
        ("1: a\n", 1, "mapping key '1' was read by YAML as int; quote it: \"1\""),
        ("ok: 1\ntrue: b\n", 2, "mapping key 'true' was read by YAML as bool; quote it: \"true\""),
        ("yes: b\n", 1, "mapping key 'yes' was read by YAML as bool"),
        ("~: 1\n", 1, "mapping key '~' was read by YAML as NoneType"),
        ("1.5: x\n", 1, "mapping key '1.5' was read by YAML as float"),
        ("? [x]\n: c\n", 1, "mapping keys must be plain strings"),
        ("{[a]: 1}\n", 1, "mapping keys must be plain strings"),
    ],
    ids=["int-key", "bool-key", "yes-key", "null-key", "float-key", "sequence-key",
         "flow-sequence-key"],
)
def test_non_string_keys_rejected(raw, line, fragment):
    doc, problems = load(raw)
    assert len(problems) == 1
    assert problems[0].line == line
    assert fragment in problems[0].message
    assert "\n" not in problems[0].message


def test_billion_laughs_refused_quickly_without_expanding():
    start = time.perf_counter()
    p = only_problem(billion_laughs())
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"alias bomb took {elapsed:.2f}s"
    assert f"more than {MAX_NODES:,} values" in p.message
    assert "after expanding aliases" in p.message
    assert "refusing to load it" in p.message
    assert p.line == 1


def test_node_budget_counts_alias_expansion(monkeypatch):
    monkeypatch.setattr(yamlload, "MAX_NODES", 10)
    # 1 root + 2 keys' values + 4 scalars each = 11 values after expansion (only 6 as written)
    p = only_problem("a: &x [1, 2, 3, 4]\nb: *x\n")
    assert "more than 10 values (after expanding aliases)" in p.message
    # the 11th value is the alias's copy of `4`, located where the anchored list wrote it
    assert (p.line, p.column) == (1, 17)


def test_node_budget_not_hit_just_below(monkeypatch):
    monkeypatch.setattr(yamlload, "MAX_NODES", 11)
    doc, problems = load("a: &x [1, 2, 3, 4]\nb: *x\n")
    assert problems == [] and doc.data == {"a": [1, 2, 3, 4], "b": [1, 2, 3, 4]}


@pytest.mark.parametrize(
    ("raw", "line", "fragment"),
    [
        ("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2), 1,
         f"nested deeper than {MAX_DEPTH} levels"),
        ("a: " + "[" * 100 + "]" * 100, 1, f"nested deeper than {MAX_DEPTH} levels"),
        ("a:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(80)), 66,
         f"nested deeper than {MAX_DEPTH} levels"),
        # refused while composing, long before PyYAML's recursive composer could overflow
        ("a: " + "[" * 500 + "]" * 500, 1, f"nested deeper than {MAX_DEPTH} levels"),
    ],
    ids=["one-past-limit", "flow-100", "block-80", "parser-recursion-500"],
)
def test_deep_nesting_refused(raw, line, fragment):
    p = only_problem(raw)
    assert p.line == line
    assert fragment in p.message


def test_file_over_max_bytes_refused():
    raw = b"# " + b"x" * MAX_BYTES + b"\n"
    p = only_problem(raw, "manifest")
    assert (p.line, p.column) == (1, 1)
    assert p.message == (f"manifest is {len(raw):,} bytes, larger than the limit of {MAX_BYTES:,} bytes")


def test_one_byte_over_patched_limit_refused(monkeypatch):
    monkeypatch.setattr(yamlload, "MAX_BYTES", 20)
    p = only_problem(b"a: " + b"x" * 17 + b"\n")
    assert p.message == "document is 21 bytes, larger than the limit of 20 bytes"


@pytest.mark.parametrize(
    ("raw", "line", "column", "byte"),
    [
        (b"a: 1\nb: caf\xe9\n", 2, 7, "0xe9"),
        (b"a: 1\nb: 2\nc: \xff\xfe\n", 3, 4, "0xff"),
        (b"\xff\xfea\x00:\x00", 1, 1, "0xff"),
        (b"# comment\n# \xc3\n", 2, 3, "0xc3"),
    ],
    ids=["latin1-e-acute", "line-3", "utf16-bom", "truncated-sequence"],
)
def test_non_utf8_names_line(raw, line, column, byte):
    p = only_problem(raw, "manifest")
    assert (p.line, p.column) == (line, column)
    assert p.message == f"manifest is not valid UTF-8 (byte {byte})"
    assert str(p).startswith(f"f.yaml:{line}:{column}: ")


def test_tab_indentation_error_located():
    p = only_problem("a:\n  b: 1\n\tc: 2\n")
    assert (p.line, p.column) == (3, 1)
    assert p.message.startswith("invalid YAML: ")
    assert "found character '\\t' that cannot start any token" in p.message


@pytest.mark.parametrize(
    ("raw", "line", "fragment"),
    [
        ("a: [1, 2\n", 2, "expected ',' or ']'"),
        ('a: "abc\nb: 1\n', 3, "found unexpected end of stream"),
        ("a: *nope\n", 1, "found undefined alias 'nope'"),
        ("a: b: c\n", 1, "mapping values are not allowed here"),
    ],
    ids=["unclosed-flow", "unclosed-quote", "undefined-alias", "nested-colon"],
)
def test_syntax_errors_located_on_one_line(raw, line, fragment):
    p = only_problem(raw)
    assert p.line == line
    assert p.message.startswith("invalid YAML: ")
    assert fragment in p.message


@pytest.mark.parametrize(
    "raw",
    [b"", b"\n\n   \n", b"# just a comment\n", b"\xef\xbb\xbf"],
    ids=["zero-bytes", "whitespace", "comment-only", "bom-only"],
)
def test_empty_document(raw):
    p = only_problem(raw, "manifest")
    assert str(p) == "f.yaml:1:1: manifest is empty"


def test_explicit_null_document_is_not_reported_as_empty():
    doc, problems = load("---\n")
    assert problems == [] and doc.data is None


def test_multiple_documents_refused():
    p = only_problem("a: 1\n---\nb: 2\n")
    assert p.line == 2
    assert p.message == "invalid YAML: but found another document"


@pytest.mark.parametrize(
    ("raw", "line"),
    [(b"a: 1\nb: \x00\n", 2), (b"\x00", 1), (b"a: 1\nb: 2\n\x00\n", 3)],
    ids=["in-value", "only-nul", "line-3"],
)
def test_nul_byte_refused(raw, line):
    p = only_problem(raw)
    assert p.line == line
    assert p.message == "document contains a NUL character"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("a: !foo bar\n",
         "cannot read value 'bar': could not determine a constructor for the tag '!foo'"),
        ("a: !!python/object:os.system ls\n", "could not determine a constructor for the tag"),
    ],
    ids=["unknown-local-tag", "python-object-tag"],
)
def test_unsafe_or_unknown_tags_are_problems(raw, fragment):
    doc, problems = load(raw)
    assert len(problems) == 1
    assert problems[0].line == 1
    assert fragment in problems[0].message


@pytest.mark.parametrize("value", ["!!int foo", "!!bool maybe", "!!float x", "!!timestamp nope"],
                         ids=["int", "bool", "float", "timestamp"])
def test_bad_explicit_tag_value_is_a_problem(value):
    doc, problems = load(f"ok: 1\na: {value}\n")
    assert [p.line for p in problems] == [2]
    assert value.split()[1] in problems[0].message
