"""Output nobody can forge (SPEC §7d): the one place values are made inert for printing.

Image names, tag keys and values, descriptions and key-policy Sids come from AWS, where
anyone with ``ec2:CreateTags``, ``ec2:RegisterImage`` or ``kms:PutKeyPolicy`` writes them;
rule names, globs and principal names come from a manifest anyone may propose in a pull
request. The renderers pass every such string (and every message that holds one) through
:func:`text`, :func:`markdown` or :func:`html` at the moment it is printed, never earlier:
values keep their exact form everywhere else (JSON, the planner, AWS calls).

- **One line.** Control characters (C0, DEL, C1), Unicode line and paragraph separators and
  format characters (bidirectional overrides, zero-width characters, BOM) are shown escaped
  (``\\n``, ``\\x1b``, ``\\u202e``), so a value can neither break a line nor move the
  terminal's cursor nor reorder what a reviewer reads.
- **No workflow command.** The GitHub runner takes a line for a command when, after its
  leading blanks, it begins with ``::``, or when it holds ``##[`` anywhere (actions/runner,
  ``ActionCommand.TryParseV2`` and the legacy ``TryParse``). A value that begins with ``::``
  has its first colon escaped, and ``##[`` is broken everywhere; a value is then no command
  wherever it stands on a line, and the tool's own words never begin with one.
- **Markdown and HTML.** In a pull-request comment a value renders as the text it is: no
  emphasis, code span, link, image, heading, table cell break or HTML, no ``@mention``,
  issue reference or autolinked URL (a zero-width space, as an entity, keeps ``@``, ``#1``,
  ``https://`` and ``www.`` from being recognised).

Pure functions of their argument, without I/O.
"""

from __future__ import annotations

import re
import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Unicode categories shown escaped: control, format, line and paragraph separators, and
# lone surrogates (a JSON answer may hold "\ud800"; no output stream can encode one).
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else (f"\\u{code:04x}" if code < 0x10000
                                                   else f"\\U{code:08x}")


def _visible(value: str) -> str:
    if value.isprintable():  # the common case: nothing to escape (and fast)
        return value
    return "".join(_escape(c) if unicodedata.category(c) in _HIDDEN else c for c in value)


def text(value: object) -> str:
    """``value`` as one inert line of plain text (terminal, CI log, YAML comment)."""
    out = _visible(str(value))
    if "##[" in out:
        out = out.replace("##[", "#\\x23[")
    stripped = out.lstrip(" ")
    if stripped.startswith("::"):
        out = out[: len(out) - len(stripped)] + "\\x3a" + stripped[1:]
    return out


# CommonMark: any ASCII punctuation may be backslash-escaped; these are the ones that start
# markup anywhere on a line (emphasis, code, links and images, tables, strikethrough, HTML,
# entities, escapes; '#' for good measure). Values never begin a Markdown line here, so the
# line-start markers (- + 1. >) need nothing.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|~<>&])")
_ZWSP = "&#8203;"  # a zero-width space, as an entity: valid in Markdown and HTML alike
# what GitHub turns into live mentions, issue links and autolinks once the text is rendered
_AUTOLINK = re.compile(r"(@|#(?=\d)|:(?=//)|(?<![A-Za-z0-9])www(?=\.))", re.IGNORECASE)


def _unlinked(escaped: str) -> str:
    return _AUTOLINK.sub(lambda m: m.group(1) + _ZWSP, escaped)


def markdown(value: object) -> str:
    """``value`` as inert inline Markdown (a list item, a table cell, bold text). Not for
    code blocks, where :func:`text` is the right form (Markdown is not parsed there)."""
    return _unlinked(_MD_SPECIAL.sub(r"\\\1", text(value)))


def html(value: object) -> str:
    """``value`` as inert text inside an HTML element (``<summary>``), where Markdown's
    backslash escapes are not read."""
    escaped = text(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _unlinked(escaped)


def _json_char(char: str) -> str:
    if char < "\x7f" or unicodedata.category(char) not in _HIDDEN:
        return char
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000  # a surrogate pair, as JSON writes characters beyond the BMP
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_text(document: str) -> str:
    """JSON text (made by :func:`json.dumps`) with every control, format or separator
    character escaped as ``\\uXXXX`` and ``##[`` broken as ``#\\u0023[``: the same values
    once parsed, and inert when a CI log shows it. Such characters and ``##[`` can only
    stand inside JSON strings, where these escapes are valid (C0 controls are escaped by
    :func:`json.dumps` already)."""
    if not (document.isascii() and "\x7f" not in document):
        document = "".join(_json_char(c) for c in document)
    return document.replace("##[", "#\\u0023[")
