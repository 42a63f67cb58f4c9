"""Pure text helpers: strict decoding, JSON from outside, diffs between two versions, and text
made safe for a terminal (no I/O)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Literal

from diff_match_patch import diff_match_patch

from .errors import InvalidContent

if TYPE_CHECKING:
    from .shared.linediff import Change

CharOp = Literal["equal", "insert", "delete"]
_DMP_OPS: dict[int, CharOp] = {0: "equal", 1: "insert", -1: "delete"}
#: a diff's search budget: about a second of work at most, far beyond what real edits need
_DIFF_FLOOR = 1_000_000
_DIFF_PER_LINE = 20

Opcode = tuple[str, int, int, int, int]  # difflib's (tag, i1, i2, j1, j2)


def decode_text(data: bytes, where: str) -> str:
    """Decode UTF-8 strictly; the error names the first bad byte and its line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InvalidContent(
            f"{where} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
            f"(line {line}, column {column}) cannot be decoded; blocks hold text only"
        ) from exc


#: Deepest nesting of arrays and objects accepted in JSON from users and plugins (tool params and
#: output, schemas): far above what a tool needs, far below where Python's recursion runs out --
#: in the parser, or in every step after it (schema validation, printing).
MAX_JSON_DEPTH = 200
TOO_DEEP = f"the JSON nests too deeply (over {MAX_JSON_DEPTH} levels of arrays and objects)"


def parse_json(text: str) -> Any:
    """``json.loads(text)``: a ``json.JSONDecodeError`` for text that is not JSON, a plain
    ValueError (:data:`TOO_DEEP`) for JSON nested too deeply to work with, however deep."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(TOO_DEEP) from None
    check_json_depth(value)
    return value


def check_json_depth(value: Any) -> None:
    """ValueError (:data:`TOO_DEEP`) if ``value`` (decoded JSON) nests deeper than
    MAX_JSON_DEPTH; walked without recursion, so any depth is safe to check."""
    containers = (dict, list, tuple)
    todo: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, containers) else []
    while todo:
        item, depth = todo.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(TOO_DEEP)
        children = item.values() if isinstance(item, dict) else item
        todo.extend((child, depth + 1) for child in children if isinstance(child, containers))


def unified_diff(old: str, new: str, old_name: str, new_name: str, context: int = 3) -> str:
    """A unified diff like ``git diff``, marking a missing final newline as git does.

    Lines are aligned by git's histogram diff (``blocksync.shared.linediff``), so a one-line change in
    a long run of identical lines is one small hunk. Time and memory are bounded: linear in the
    input plus a search budget of ``_DIFF_FLOOR`` + ``_DIFF_PER_LINE`` steps per line; regions
    still unsearched when it runs out are shown as one replacement each (correct, but coarse).
    The format is difflib's: no hunk for equal texts, ranges and context as ``difflib`` gives.
    """
    from .shared.linediff import Budget, histogram  # not paid by commands that show no diff

    a = _diff_lines(old)
    b = _diff_lines(new)
    changes = histogram(a, b, Budget(_DIFF_FLOOR + _DIFF_PER_LINE * (len(a) + len(b))))
    out: list[str] = []
    for group in _grouped(_opcodes(changes, len(a), len(b)), context):
        if not out:
            out += [f"--- {old_name}\n", f"+++ {new_name}\n"]
        first, last = group[0], group[-1]
        out.append(f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@\n")
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                out += [" " + line for line in a[i1:i2]]
                continue
            out += ["-" + line for line in a[i1:i2]]
            out += ["+" + line for line in b[j1:j2]]
    return "".join(out)


def _opcodes(changes: list[Change], n1: int, n2: int) -> list[Opcode]:
    """difflib's opcodes for an edit script: equal runs between the changes."""
    codes: list[Opcode] = []
    i = j = 0
    for c in changes:
        if c.i1 > i:
            codes.append(("equal", i, c.i1, j, c.i2))
        tag = "replace" if c.chg1 and c.chg2 else "delete" if c.chg1 else "insert"
        codes.append((tag, c.i1, c.i1 + c.chg1, c.i2, c.i2 + c.chg2))
        i, j = c.i1 + c.chg1, c.i2 + c.chg2
    if i < n1:
        codes.append(("equal", i, n1, j, n2))
    return codes


def _grouped(codes: list[Opcode], n: int) -> list[list[Opcode]]:
    """difflib's ``get_grouped_opcodes``: hunks with ``n`` lines of context, joined when the
    equal run between two changes is at most ``2n`` long."""
    if not codes:
        codes = [("equal", 0, 1, 0, 1)]
    if codes[0][0] == "equal":
        tag, i1, i2, j1, j2 = codes[0]
        codes[0] = tag, max(i1, i2 - n), i2, max(j1, j2 - n), j2
    if codes[-1][0] == "equal":
        tag, i1, i2, j1, j2 = codes[-1]
        codes[-1] = tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)
    groups: list[list[Opcode]] = []
    group: list[Opcode] = []
    for tag, i1, i2, j1, j2 in codes:
        if tag == "equal" and i2 - i1 > 2 * n:
            group.append((tag, i1, min(i2, i1 + n), j1, min(j2, j1 + n)))
            groups.append(group)
            group = []
            i1, j1 = max(i1, i2 - n), max(j1, j2 - n)
        group.append((tag, i1, i2, j1, j2))
    if group and not (len(group) == 1 and group[0][0] == "equal"):
        groups.append(group)
    return groups


def _range(start: int, stop: int) -> str:
    """difflib's ``_format_range_unified``: "start,length", 1-based; a single line is "start"."""
    length = stop - start
    if length == 1:
        return f"{start + 1}"
    return f"{start + 1 if length else start},{length}"


def _diff_lines(text: str) -> list[str]:
    # split on "\n" only: CR, form feed and friends are content, not line breaks
    lines = [line + "\n" for line in text.split("\n")]
    last = lines.pop()
    if last != "\n":
        lines.append(last[:-1] + "\n\\ No newline at end of file\n")
    return lines


def char_diff(old: str, new: str) -> list[tuple[CharOp, str]]:
    """Character-level diff (diff-match-patch), cleaned up to read as word-level edits."""
    dmp = diff_match_patch()
    dmp.Diff_Timeout = 2.0
    diffs = dmp.diff_main(old, new)
    dmp.diff_cleanupSemantic(diffs)
    return [(_DMP_OPS[op], chunk) for op, chunk in diffs]


def render_char_diff(ops: list[tuple[CharOp, str]], color: bool) -> str:
    """Render a character diff inline: ``[-gone-]{+added+}``, or red/green on a terminal."""
    out = []
    for op, chunk in ops:
        chunk = printable(chunk, keep="\n\t")  # contents, shown: no escape sequence of theirs
        if op == "equal":
            out.append(chunk)
        elif color:
            out.append(f"\x1b[{'32' if op == 'insert' else '31'}m{chunk}\x1b[0m")
        else:
            out.append(f"{{+{chunk}+}}" if op == "insert" else f"[-{chunk}-]")
    return "".join(out)


#: what a terminal must not receive raw from a name, a reason or a plugin's words: C0 and C1
#: control characters and DEL (ESC starts CSI/OSC sequences, CR rewrites the line, BEL rings),
#: Unicode line separators, bidirectional controls (they reorder what is shown: one name can
#: pass for another), and lone surrogates (bytes of a file name that were not UTF-8)
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str, keep: str = "") -> str:
    """``text`` safe to print on a terminal: each character :data:`_UNPRINTABLE` matches as a
    backslash escape -- ``\\n``, ``\\t``, ``\\x1b``, ``\\u202e``; a byte of a non-UTF-8 name
    (decoded with surrogateescape) as the ``\\xff`` it was -- except the characters in ``keep``
    (``"\\n\\t"`` for multi-line content). Text needing none comes back unchanged. For text
    output only: JSON output stays exact."""

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        code = ord(char)
        if char in keep:
            return char
        if 0xDC80 <= code <= 0xDCFF:
            return f"\\x{code - 0xDC00:02x}"
        return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")

    return _UNPRINTABLE.sub(escape, text)
