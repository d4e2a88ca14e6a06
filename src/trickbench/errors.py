"""Bad input: what the user can fix (a params key, a file, a name, a setting), as opposed to a bug.

`trickbench` maps exactly `BadInput` and its subclasses to exit code 2 and one line on stderr, the
error's message; anything else is a bug and shows its traceback (exit 1). So the raiser writes the
whole line: it names the key or file at fault and what was expected, because only the raiser knows
which file it was reading. Each class also keeps the built-in base it had before this module existed
(ParamsError is a ValueError, ...), so an `except ValueError` written against it still holds.

No heavy imports here: `trickbench validate` and `grid` import this module, never numpy, Pillow or torch.
"""
from __future__ import annotations

__all__ = ["BadInput", "ParamsError", "GridError", "UnknownComponentError", "DataError", "NetworkError",
           "UnreadableFileError", "MalformedFileError", "MissingInputError", "TrackingError"]


class BadInput(Exception):
    """Input the user can fix; `str(error)` is the one line the CLI prints."""


class ParamsError(BadInput, ValueError):
    """A params file that cannot be used; the message names the file, the key and what was expected."""


class GridError(BadInput, ValueError):
    """A study whose grid cannot be expanded (no axes, an empty axis, duplicate ids), or an unknown study
    or grid point asked for on the command line."""


class UnknownComponentError(BadInput, KeyError):
    """A name that no registry entry carries; the message lists the valid names."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        super().__init__(f"unknown {kind} {name!r}; valid names: {', '.join(valid)}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class DataError(BadInput):
    """Bad input data; the message names the file (and member) at fault and what was expected."""


class NetworkError(DataError):
    """The server could not be reached at all (offline, name resolution, connection refused, timeout)."""


class UnreadableFileError(DataError, ValueError):
    """A file that exists but cannot be parsed (truncated, garbled, another format); the message names it.
    A ValueError too, as json and numpy raise on such a file, so a reader that skips unreadable files
    (`except ValueError`) still does."""


class MissingInputError(BadInput, FileNotFoundError):
    """A file a stage reads is missing; the message names it and the stage that writes it."""


class TrackingError(BadInput, RuntimeError):
    """The tracking store cannot be used (unknown scheme, missing folder, no server answering): bad input,
    reported in one line before a stage writes anything."""


class MalformedFileError(UnreadableFileError):
    """A stage file that parses but does not hold what the stage wrote (a JSON list where a mapping belongs, a
    missing key or column, arrays of other shapes): someone else's file, or one edited by hand. The message
    names the file, what is wrong and what was expected."""
