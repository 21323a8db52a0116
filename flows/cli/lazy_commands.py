"""Commands whose module is imported only when the command runs (or its ``--help`` shows).

``civicvault --help`` lists every command with its one-line summary; for the lazy ones
the summary is written next to the registration in ``flows.cli`` (a test holds it equal
to the command's own docstring), so listing them imports nothing. Running one imports
its module, lets it ``register`` on a scratch Typer app (or mounts its ``app`` group),
and hands the resulting Click command to the root group.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import typer
import typer.core
import typer.main

try:  # Typer >= 0.29 vendors Click
    from typer._click import Command, Context, HelpFormatter
    from typer._click.utils import make_default_short_help
except ImportError:  # pragma: no cover - older Typer on real Click
    from click import Command, Context, HelpFormatter  # type: ignore[assignment]
    from click.utils import make_default_short_help  # type: ignore[no-redef]


@dataclass(frozen=True)
class LazyCommand:
    name: str
    module: str
    summary: str


def load(spec: LazyCommand) -> Command:
    """Import ``spec.module`` and build its Click command named ``spec.name``."""
    module = importlib.import_module(spec.module)
    scratch = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                          rich_markup_mode=None)
    scratch.callback()(lambda: None)  # a callback keeps the result a group
    group_app = getattr(module, "app", None)
    register = getattr(module, "register", None)
    if isinstance(group_app, typer.Typer) and register is None:
        scratch.add_typer(group_app, name=spec.name)
    else:
        assert callable(register), f"{spec.module} has no register(app)"
        register(scratch)
    group: Any = typer.main.get_command(scratch)
    return group.commands[spec.name]  # type: ignore[no-any-return]


class _Commands(MutableMapping[str, Command]):
    """The root group's command table: eager commands, plus lazy ones loaded on lookup."""

    def __init__(self, eager: MutableMapping[str, Command], lazy: Sequence[LazyCommand]) -> None:
        self._loaded = dict(eager)
        self.lazy = {spec.name: spec for spec in lazy if spec.name not in self._loaded}

    def __getitem__(self, name: str) -> Command:
        if name not in self._loaded and name in self.lazy:
            self._loaded[name] = load(self.lazy[name])
        return self._loaded[name]

    def __setitem__(self, name: str, cmd: Command) -> None:
        self._loaded[name] = cmd

    def __delitem__(self, name: str) -> None:
        self._loaded.pop(name, None)
        self.lazy.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._loaded
        yield from (n for n in self.lazy if n not in self._loaded)

    def __len__(self) -> int:
        return len(set(self._loaded) | set(self.lazy))

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded


class LazyTyperGroup(typer.core.TyperGroup):
    """A TyperGroup whose help lists lazy commands without importing them."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)  # names only (TyperGroup's reads every value)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        table = self.commands
        if not isinstance(table, _Commands):
            super().format_commands(ctx, formatter)
            return
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if table.is_loaded(name) or name not in table.lazy:
                cmd = table[name]
                if cmd.hidden:
                    continue
                rows.append((name, cmd.get_short_help_str(limit)))
            else:
                rows.append((name, make_default_short_help(table.lazy[name].summary, limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def lazy_click_app(app: typer.Typer, lazy: Sequence[LazyCommand]) -> Callable[..., Any]:
    """The Click group of ``app`` with ``lazy`` commands added (called like a Typer app)."""
    group: Any = typer.main.get_command(app)
    group.__class__ = LazyTyperGroup
    group.commands = _Commands(group.commands, lazy)
    return group.main  # type: ignore[no-any-return]
