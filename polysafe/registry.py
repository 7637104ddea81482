"""A tiny plugin registry: each stage (attacks, judges, models, ...) owns one.

A plugin is one file that decorates a factory with `@REGISTRY.register("name")`. On first lookup the registry
imports every module of its stage's package (`load_plugins`), so adding a plugin never touches another file,
and importing a stage never drags in the others (no import cycles).
A spec string is `name` or `name:argument`; the factory receives the argument (or None) and options.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from .errors import SpecError

T = TypeVar("T")


@dataclass(frozen=True)
class PluginInfo:
    name: str
    summary: str
    takes_argument: bool
    example: str
    argument_optional: bool = False  # `name` and `name:argument` both valid


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str | None = None):
        self.kind = kind
        self.package = package  # imported on first lookup, so that every plugin file has registered
        self._loaded = package is None
        self._factories: dict[str, Callable[..., T]] = {}
        self._info: dict[str, PluginInfo] = {}

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            load_plugins(self.package)

    def register(self, name: str, *, summary: str = "", takes_argument: bool = False, example: str = "",
                 argument_optional: bool = False):
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._factories[name] = factory
            doc = summary or (factory.__doc__ or "").strip().splitlines()[0:1]
            self._info[name] = PluginInfo(
                name=name,
                summary=doc if isinstance(doc, str) else (doc[0] if doc else ""),
                takes_argument=takes_argument,
                example=example or name,
                argument_optional=argument_optional,
            )
            return factory

        return decorate

    def names(self) -> list[str]:
        self._load()
        return sorted(self._factories)

    def info(self, name: str) -> PluginInfo:
        self._load()
        return self._info[name]

    def split(self, spec: str) -> tuple[str, str | None]:
        self._load()
        name, sep, arg = spec.strip().partition(":")
        if name not in self._factories:
            known = ", ".join(self.names())
            raise SpecError(f"unknown {self.kind} '{name}' in spec '{spec}' (known: {known})", field=self.kind)
        info = self._info[name]
        if info.takes_argument and not arg and not info.argument_optional:
            raise SpecError(f"{self.kind} '{name}' needs an argument, e.g. '{info.example}'", field=self.kind)
        if not info.takes_argument and sep:
            raise SpecError(f"{self.kind} '{name}' takes no argument (got '{spec}')", field=self.kind)
        return name, (arg or None)

    def create(self, spec: str, **options) -> T:
        name, arg = self.split(spec)
        factory = self._factories[name]
        return factory(arg, **options) if self._info[name].takes_argument else factory(**options)


def load_plugins(package_name: str) -> None:
    """Import every module of a package so that their `register` decorators run."""
    package = importlib.import_module(package_name)
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package_name}.{module.name}")
