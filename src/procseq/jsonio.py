"""One reader for every JSON a user or a server hands in (plan files, batch lines, sequence.json, endpoint answers).

:func:`loads` / :func:`read_json` check, in linear time and before anything recurses, that the text is not
nested deeper than :data:`MAX_DEPTH`, parse it, check the top-level type and that no string holds a lone
surrogate (it could not be written back as UTF-8), and turn every failure into a ``ValueError`` that names
the file (or what the text is) and says what to change. :func:`check_fields` checks the types of an
object's fields the same way.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

MAX_DEPTH = 64
"""Deepest nesting of arrays/objects accepted (procseq's own files nest 4 levels)."""

MAX_BYTES = 64 * 1024 * 1024
"""Largest JSON file read (a corpus record or a plan is a few KB)."""

_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[\[\]{}]', re.S)  # an open string runs to the end: linear
_SURROGATE = re.compile("[\ud800-\udfff]")
_TYPE_NAMES = {dict: "an object", list: "a list", str: "text", int: "a whole number", float: "a number",
               bool: "true or false", type(None): "null"}


def type_name(t: type) -> str:
    """How a JSON type reads in a message (``dict`` -> "an object")."""
    return _TYPE_NAMES.get(t, t.__name__)


def nesting_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in `text` outside strings (one linear scan, no recursion)."""
    depth = deepest = 0
    for m in _TOKENS.finditer(text):
        tok = m.group()
        if tok in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif tok in "]}":
            depth -= 1
    return deepest


def check_strings(obj: Any, what: str) -> None:
    """Refuse any string in `obj` (keys and values, at any depth) holding a lone surrogate."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise ValueError(f"{what} holds text that is not valid Unicode (a lone surrogate escape such as "
                                 "\\ud800); write the text in UTF-8.")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def loads(text: str | bytes, what: str, expect: type | tuple[type, ...] | None = dict,
          max_depth: int = MAX_DEPTH) -> Any:
    """Parse `text` as JSON: at most `max_depth` levels deep, top level of type `expect`, no lone surrogates.

    `what` names the source in messages (``"plan.json"``, ``"line 3"``). Raises ``ValueError`` only.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{what} is not UTF-8 text (byte {err.start}); save it as UTF-8 JSON.") from None
    depth = nesting_depth(text)
    if depth > max_depth:
        raise ValueError(f"{what} is nested {depth} levels deep; at most {max_depth} are accepted.")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
                         "fix or rewrite it.") from None
    except RecursionError:  # a nesting the scan above missed (it never should)
        raise ValueError(f"{what} is nested too deeply; at most {max_depth} levels are accepted.") from None
    if expect is not None and not isinstance(obj, expect):
        wanted = " or ".join(type_name(t) for t in (expect if isinstance(expect, tuple) else (expect,)))
        raise ValueError(f"{what} holds {type_name(type(obj))} at the top level, not {wanted}.")
    check_strings(obj, what)
    return obj


def read_json(path: str | Path, expect: type | tuple[type, ...] | None = dict, max_bytes: int = MAX_BYTES) -> Any:
    """Read the JSON file `path` through :func:`loads`; a missing path is ``FileNotFoundError``, a folder, FIFO or
    device (anything but a regular file) or a file over `max_bytes` is a ``ValueError`` naming it."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist; give the path of a JSON file.") from None
    except OSError as err:
        raise ValueError(f"Cannot read {path}: {err.strerror or err}.") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ValueError(f"{path} is {kind}; give the path of a JSON file.")
    if info.st_size > max_bytes:
        raise ValueError(f"{path} is {info.st_size} bytes, over the {max_bytes} accepted for a JSON file.")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"Cannot read {path}: {err.strerror or err}.") from None
    return loads(data, str(path), expect)


def check_fields(obj: dict[str, Any], fields: dict[str, type | tuple[type, ...]], what: str,
                 required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check that `obj` has every `required` key and that each of `fields` present has its type (``bool`` is not
    a number here); returns `obj`. ``ValueError`` naming `what` and the field otherwise."""
    missing = [k for k in required if k not in obj]
    if missing:
        raise ValueError(f"{what} needs {', '.join(missing)}; it has {', '.join(sorted(map(str, obj))) or 'no keys'}.")
    for key, types in fields.items():
        if key not in obj:
            continue
        value, types = obj[key], types if isinstance(types, tuple) else (types,)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join(type_name(t) for t in types)
            raise ValueError(f"{what}: {key} must be {wanted}, got {str(value)[:60]!r}.")
    return obj


__all__ = ["MAX_BYTES", "MAX_DEPTH", "check_fields", "check_strings", "loads", "nesting_depth", "read_json", "type_name"]
