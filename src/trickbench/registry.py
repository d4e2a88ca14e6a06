"""Small name -> component registries: the only way components are looked up by name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from trickbench.errors import UnknownComponentError

__all__ = ["Entry", "Registry", "UnknownComponentError"]


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Callable[..., Any]
    description: str
    extra: dict[str, Any]


class Registry:
    """An ordered mapping name -> Entry with a decorator to add entries.

    `extras`: the keys every entry of this kind must carry in its extras, because code reads them
    (an activation's `negative_slope`, a model's `min_image_size`); an entry without one is refused when
    it is registered, at import, instead of failing in whichever run first reads it.
    """

    def __init__(self, kind: str, extras: tuple[str, ...] = ()):
        self.kind = kind
        self.extras = tuple(extras)
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str, **extra: Any) -> Callable:
        def add(fn: Callable) -> Callable:
            self.add(name, fn, description, **extra)
            return fn

        return add

    def add(self, name: str, fn: Callable, description: str, **extra: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        missing = [key for key in self.extras if key not in extra]
        if missing:
            raise TypeError(f"{self.kind} {name!r} registered without {', '.join(missing)}; every {self.kind} "
                            f"declares {', '.join(self.extras)}")
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
