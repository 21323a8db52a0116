"""What Prefect may print on the terminal while a CLI command runs a flow.

Prefect's console handler prints a flow's failure twice over: an ``ERROR`` line per
failed task and flow run, and the whole traceback (``logger.exception("Encountered
exception during execution")``). A CLI command that runs a flow already reports its
failure as one ``error:`` line with the right exit code (bad input 2, a denial 1), so
while :func:`cli_console` is active, Prefect's console handler

- drops Prefect's own ``ERROR`` and ``CRITICAL`` records (the command's one line says
  what failed; the records still reach Prefect's API, where the run's page shows them);
- and never prints a traceback or a stack: any other record that carries one is
  printed as its message line only.

Progress (``INFO``) and warnings stay on the terminal as Prefect prints them.

``civicvault deploy`` serves flows for hours: its log is an operator's, so a failed run
keeps its ``ERROR`` lines there, but no traceback either (:func:`served_console`, in the
serving process and in each flow-run process it spawns).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class WithoutTraceback(logging.Formatter):
    """Formats a record as ``inner`` does, minus any traceback or stack."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            record = logging.makeLogRecord(
                {**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None})
        return self.inner.format(record)


class FailuresToTheCommand(logging.Filter):
    """Drops Prefect's ``ERROR``+ records: the command prints the failure as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        prefect_record = record.name == "prefect" or record.name.startswith("prefect.")
        return not (prefect_record and record.levelno >= logging.ERROR)


@contextmanager
def cli_console() -> Iterator[None]:
    """Inside the block, Prefect's console handlers print no failure and no traceback."""
    handlers = _console_handlers()
    quiet = FailuresToTheCommand()
    saved = [(h, h.formatter) for h in handlers]
    for handler, formatter in saved:
        handler.setFormatter(WithoutTraceback(formatter))
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler, formatter in saved:
            handler.removeFilter(quiet)
            handler.setFormatter(formatter)


SERVED_ENV = "CIVICVAULT_SERVED"  # set by ``civicvault deploy``; its flow-run processes inherit it


def _console_handlers() -> list[logging.Handler]:
    """Prefect's console handlers on the root logger, Prefect's logging set up first.

    Callers have imported ``flows.prefect_env`` (every ``flows`` module that uses Prefect
    does so first: Prefect reads its settings at import); this module does not import it,
    since ``prefect_env`` calls :func:`served_run_console` in a served flow-run process."""
    if "flows.prefect_env" not in sys.modules:
        raise RuntimeError("flows.prefect_env must be imported before Prefect's console")
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()  # what ``import prefect`` does; later calls only adjust levels
    return [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]


def served_console() -> None:
    """For the rest of this process, Prefect's console handlers print records without their
    traceback (``ERROR`` lines stay: a service's log says what failed, and the whole
    record, traceback included, still reaches Prefect's API). Marks the environment so the
    flow-run processes ``prefect.serve`` spawns do the same (:func:`served_run_console`)."""
    os.environ[SERVED_ENV] = "1"
    for handler in _console_handlers():
        if not isinstance(handler.formatter, WithoutTraceback):
            handler.setFormatter(WithoutTraceback(handler.formatter))


def served_run_console() -> None:
    """In a flow-run process of ``civicvault deploy`` (a spawned child that has imported
    Prefect before it imports our flows), the same console as its parent's;
    ``flows.prefect_env`` calls it when ``SERVED_ENV`` is set."""
    if "prefect" in sys.modules:
        served_console()
