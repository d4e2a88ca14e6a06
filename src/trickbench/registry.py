"""Small name -> component registries: the only way components are looked up by name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator


class UnknownComponentError(KeyError):
    """A name that no registry entry carries; the message lists the valid names."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        super().__init__(f"unknown {kind} {name!r}; valid names: {', '.join(valid)}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Callable[..., Any]
    description: str
    extra: dict[str, Any]


class Registry:
    """An ordered mapping name -> Entry with a decorator to add entries."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str, **extra: Any) -> Callable:
        def add(fn: Callable) -> Callable:
            self.add(name, fn, description, **extra)
            return fn

        return add

    def add(self, name: str, fn: Callable, description: str, **extra: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._entries[name] = Entry(name, fn, description, extra)

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self.kind, name, self.names()) from None

    def get(self, name: str) -> Callable[..., Any]:
        return self.entry(name).fn

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
