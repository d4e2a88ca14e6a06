"""What a string in params may hold: every name and value can become a folder, a file, a device or part of a
command, so each is checked as one (`check_string`), whatever key it sits under, axes and data.options included.

- no control characters (a newline, a tab, NUL, DEL, U+2028...): a schema `pattern` ending in `$` matches before
  a trailing newline, so `device: "cpu\\n"` or a study `"s\\n"` would pass it;
- at most MAX_VALUE_BYTES bytes (UTF-8), and no part between slashes longer than NAME_MAX bytes, so every path
  the project builds from it stays within the file system's limits (NAME_MAX 255, PATH_MAX 4096);
- a mapping key (a study name, an option) at most NAME_MAX bytes.

Free text (a study's `description`, the paper table's `note`) may hold newlines and tabs, and is only bounded.
"""
from __future__ import annotations

import unicodedata
from typing import Any

NAME_MAX = 255  # bytes of one path component on Linux, macOS and Windows file systems
MAX_VALUE_BYTES = 1024  # a name, a path, a URI: with the project's own folders well under PATH_MAX (4096)
MAX_FREE_TEXT_CHARS = 10_000
FREE_TEXT_KEYS = ("description", "note")  # the last key of a free-text value
FREE_TEXT_CONTROLS = "\n\t\r"


def control_character(text: str, allowed: str = "") -> str | None:
    """The first control character of `text` as U+XXXX (with its name where it has one), or None."""
    for char in text:
        if char not in allowed and unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            name = unicodedata.name(char, "")
            return f"U+{ord(char):04X}" + (f" {name}" if name else "")
    return None


def string_problem(value: str, location: str) -> str | None:
    """What is wrong with the string `value` at the dotted `location`, or None."""
    if location.rsplit(".", 1)[-1] in FREE_TEXT_KEYS:
        if (found := control_character(value, FREE_TEXT_CONTROLS)) is not None:
            return f"contains the control character {found}; expected plain text"
        if len(value) > MAX_FREE_TEXT_CHARS:
            return f"is {len(value):,} characters long; expected at most {MAX_FREE_TEXT_CHARS:,}"
        return None
    if (found := control_character(value)) is not None:
        return (f"contains the control character {found}; expected a single line without control characters "
                "(names, paths, devices and URIs become files and commands)")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_VALUE_BYTES:
        return f"is {size:,} bytes long; expected at most {MAX_VALUE_BYTES:,} (a name, path or URI)"
    longest = max((part for part in value.split("/")), key=lambda part: len(part.encode("utf-8", "surrogatepass")))
    if len(longest.encode("utf-8", "surrogatepass")) > NAME_MAX:
        return (f"has a part of {len(longest.encode('utf-8', 'surrogatepass')):,} bytes between slashes; expected at "
                f"most {NAME_MAX} (the file system's limit on one file or folder name)")
    return None


def key_problem(key: str) -> str | None:
    """What is wrong with a mapping key (it may become a folder name), or None."""
    if (found := control_character(key)) is not None:
        return f"contains the control character {found}; expected a plain name"
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > NAME_MAX:
        return f"is {size:,} bytes long; expected at most {NAME_MAX} (keys such as study names become folder names)"
    return None


def check_names(node: Any, location: str, fail: Any) -> None:
    """`fail(location, message)` for the first string or key of `node` (nested lists and mappings) that breaks
    the rules above; `fail` raises."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and (problem := key_problem(key)) is not None:
                fail(location or "<top level>", f"key {key[:80]!r}{'...' if len(key) > 80 else ''} {problem}")
            check_names(value, f"{location}.{key}" if location else str(key), fail)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            check_names(value, f"{location}.{index}", fail)
    elif isinstance(node, str) and (problem := string_problem(node, location)) is not None:
        fail(location, f"{node[:80]!r}{'...' if len(node) > 80 else ''} {problem}")
