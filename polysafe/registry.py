"""A tiny plugin registry: each stage (attacks, judges, models, ...) owns one.

A plugin is one file that decorates a factory with `@REGISTRY.register("name")`. On first lookup the registry
imports every module of its stage's package (`load_plugins`), so adding a plugin never touches another file,
and importing a stage never drags in the others (no import cycles).
A spec string is `name` or `name:argument`; the factory receives the argument (or None) and options.

Third-party plugins register the same way from their own package, found through Python entry points. The
group is `polysafe.` + the registry's kind in the plural (`polysafe.attacks`, `polysafe.judges`,
`polysafe.models`, `polysafe.translators`, `polysafe.benchmarks`; `polysafe.prompt_sets`, ...). The contract:
an entry point names a MODULE, and importing it runs its `@REGISTRY.register(...)` decorators, exactly as a
built-in plugin file does (the entry point's own name only labels it in warnings). In a plugin's pyproject.toml:

    [project.entry-points."polysafe.attacks"]
    mirror = "polysafe_mirror.attack"

A registry imports its own package's modules first, then its group's entry points, so a third-party plugin
can never replace a built-in name. A plugin that fails to import, names an object instead of a module, or
registers a name twice is skipped with a one-line warning on stderr naming the entry point: a broken
third-party package never stops polysafe.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import weakref
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


_REGISTRIES: "weakref.WeakSet[Registry]" = weakref.WeakSet()


def entry_point_group(kind: str) -> str:
    """`attack` -> `polysafe.attacks`, `prompt set` -> `polysafe.prompt_sets`."""
    return "polysafe." + kind.replace(" ", "_") + "s"


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str | None = None, *, group: str | None = None):
        self.kind = kind
        self.package = package  # imported on first lookup, so that every plugin file has registered
        self.group = group or entry_point_group(kind)  # third-party plugins, loaded after the package
        self._loaded = False
        self._factories: dict[str, Callable[..., T]] = {}
        self._info: dict[str, PluginInfo] = {}
        _REGISTRIES.add(self)

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            if self.package:
                load_plugins(self.package)
            load_entry_points(self.group)

    def register(self, name: str, *, summary: str = "", takes_argument: bool = False, example: str = "",
                 argument_optional: bool = False):
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if not self._loaded and self.package and not _inside(factory.__module__, self.package):
                self._load()  # a plugin from elsewhere registers after the built-ins, so it can't take their names
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

    def factory(self, name: str) -> Callable[..., T]:
        self._load()
        return self._factories[name]

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


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def all_registries() -> list[Registry]:
    """Every registry created so far (a stage's registry exists once its package is imported)."""
    return sorted(_REGISTRIES, key=lambda registry: registry.kind)


def load_plugins(package_name: str) -> None:
    """Import every module of a package so that their `register` decorators run."""
    package = importlib.import_module(package_name)
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package_name}.{module.name}")


def load_entry_points(group: str) -> None:
    """Import the module each entry point of `group` names; a plugin that fails is skipped with a warning."""
    import importlib.metadata  # 12 ms: only when a registry is first used

    for entry in importlib.metadata.entry_points(group=group):
        label = f"plugin entry point '{entry.name} = {entry.value}' ({group})"
        if entry.attr:
            plugin_warning(f"{label} skipped: it must name a module, not an object")
            continue
        try:
            importlib.import_module(entry.module)
        except (Exception, SystemExit) as err:  # third-party code: anything may go wrong, nothing may stop us
            plugin_warning(f"{label} failed to load: {type(err).__name__}: {err}")


def plugin_warning(message: str) -> None:
    print("polysafe: warning: " + " ".join(message.split()), file=sys.stderr)
