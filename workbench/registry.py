"""One registry class for everything the workbench knows by name and declares once in a spec: the attacks
(``workbench.attacks.registry``) and the defenses (``workbench.defenses.registry``) are each one
:class:`Registry` of their spec type. Adding an entry is ``register(name, spec)``; the order of registration is
the order of ``names()`` (the attacks' suites run in it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Generic, TypeVar

from workbench import checks

S = TypeVar("S")


class Registry(Generic[S]):
    """Specs of type ``kind`` by name.

    Args:
        what: what the entries are, for messages ("attack", "defense").
        kind: the spec class every entry must be an instance of.
        entries: the built-in entries, in order.
        admit: checks a new entry (name, spec) beyond its type; raises ValueError naming the argument.
    """

    def __init__(self, what: str, kind: type[S], entries: Mapping[str, S],
                 admit: Callable[[str, S], None] | None = None):
        self.what, self.kind, self._admit = what, kind, admit
        self._specs: dict[str, S] = {}
        for name, entry in entries.items():
            self.register(name, entry)
        self.specs: Mapping[str, S] = MappingProxyType(self._specs)

    def register(self, name: str, spec: S) -> S:
        """Add (or replace) the entry ``name``: it is then accepted wherever a name of this kind is."""
        if not isinstance(spec, self.kind):
            raise ValueError(f"spec must be a {self.kind.__name__}, got {type(spec).__name__}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if self._admit is not None:
            self._admit(name, spec)
        self._specs[name] = spec
        return spec

    def unregister(self, name: str) -> None:
        """Remove an entry (tests that register a toy one)."""
        self._specs.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """The registered names, in the order they were registered."""
        return tuple(self._specs)

    def spec(self, name: str) -> S:
        """The spec of ``name``."""
        checks.choice("name", name, self.names())
        return self._specs[name]
