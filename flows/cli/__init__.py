"""The ``civicvault`` command: a thin shell over vault, ledger and policy operations.

Exit codes are decided here and only here: 0 success; 1 verification failure or
access denied (``CivicVaultError.exit_code == 1``); 2 bad input or usage, and
storage faults (disk full, read-only home or database, a lock held by another
writer: ``vault.errors.storage_fault`` names them, with a hint). Errors print one
line on stderr, never a traceback and never a data value.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Annotated

import typer

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from flows.cli import (
    audit,
    classify,
    flows,
    link,
    receipt,
    release,
    serve,
    vault,
    witness,
)
from flows.cli.lazy_commands import LazyCommand, lazy_click_app
from flows.output import err_console

try:  # Typer >= 0.29 vendors Click
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older Typer on real Click
    from click import exceptions as click_exc  # type: ignore[no-redef]
from ledger.errors import CivicVaultError

app = typer.Typer(
    name="civicvault",
    help="A privacy-first vault for civic data with a verifiable audit ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(
    ctx: typer.Context,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="CIVICVAULT_TOKEN",
            help="Principal token (default: the vault home's admin.token).",
            show_envvar=True,
        ),
    ] = None,
) -> None:
    # set but empty is a mistake, never "use the admin token" (flows.session refuses it)
    empty = (token is not None and not token.strip()) or (
        token is None and os.environ.get("CIVICVAULT_TOKEN") is not None)
    ctx.obj = {"token": None if empty else token, "token_empty": empty}


classify.register(app)
release.register(app)
flows.register(app)
vault.register(app)
serve.register(app)
link.register(app)
app.add_typer(audit.app, name="audit")
# imported only when used (their modules load SQLAlchemy, pydantic and cryptography):
LAZY_COMMANDS = (
    LazyCommand("principals", "flows.cli.admin", "Principals: who may act, holding which role."),
    LazyCommand("policy", "flows.cli.admin", "The access, PII, segment and budget policy."),
    LazyCommand("reveal", "flows.cli.admin",
                "Break glass: open the records of the matching subject(s) (steward; "
                "purpose; rate-limited)."),
    LazyCommand("ledger", "flows.cli.ledger", "The verifiable audit ledger."),
)
app.add_typer(receipt.app, name="receipt")
app.add_typer(witness.app, name="witness")


def _fail(message: str, code: int) -> int:
    """The CLI's one error line (stderr, then the exit code). What reaches it, from
    :func:`main` only: a ``CivicVaultError``'s first line (ids, counts and names of
    things, never a value: that class's contract, tested per error), a storage fault's
    diagnostics (classified from codes, never the driver's text), fixed texts, and
    Click's usage messages after :func:`_usage` took out everything the caller typed.
    Never a row, a value or an exception's own message."""
    err_console.print(f"error: {message}", markup=False, soft_wrap=True)
    return code


_OPTION_NAME = re.compile(r"--?[A-Za-z][A-Za-z0-9-]*")


def _typed(argv: list[str] | None) -> list[str]:
    """What the caller typed that a usage message may quote back: each argument, and the
    value of each ``--option=value``, but not option names (longest first). Parts under
    3 characters are left: replacing them would cut up the message's own words, and they
    cannot carry a name or an email."""
    parts: set[str] = set()
    for token in sys.argv[1:] if argv is None else argv:
        name, eq, value = token.partition("=")
        for part in (token, value) if eq and _OPTION_NAME.fullmatch(name) else (token,):
            if len(part) >= 3 and not _OPTION_NAME.fullmatch(part):
                parts.add(part)
    return sorted(parts, key=len, reverse=True)


def _usage(message: str, argv: list[str] | None) -> str:
    """Click's usage message without anything the caller typed: it quotes back extra
    arguments, unknown options and commands and refused values, and anything typed can
    be a person's name or email (the message goes to logs)."""
    for part in _typed(argv):
        message = message.replace(part, "<typed>")
    return message


INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` follows an interrupt (Ctrl-C, or SIGTERM turned into one): raised
    while handling a ``KeyboardInterrupt`` (Prefect's engine, interrupted while it sets up
    a task run, raises its own error from inside that handling), or after a signal reached
    :func:`flows.ephemeral.terminate_as_interrupt` (a library that swallowed the interrupt
    and failed later, unchained)."""
    ephemeral = sys.modules.get("flows.ephemeral")  # imported by every command it guards
    if ephemeral is not None and ephemeral.interrupt_received():
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt) or _terminated(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _terminated(exc: BaseException) -> bool:
    """Whether ``exc`` is Prefect's ``TerminationSignal``: while a flow runs, Prefect's own
    SIGTERM handler replaces this CLI's (see :func:`flows.ephemeral.terminate_as_interrupt`)
    and raises it. The engine then reports the crash to the server; an error in that
    report replaces it (chained), and Prefect's handler never passes the signal on, so
    no signal is on record (seen once in a fresh clone's suite: the demo, sent SIGTERM,
    ended "internal error (ValueError)", exit 1)."""
    termination = getattr(sys.modules.get("prefect.exceptions"), "TerminationSignal", None)
    return termination is not None and isinstance(exc, termination)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (also used by tests in-process)."""
    ephemeral = sys.modules.get("flows.ephemeral")
    if ephemeral is not None:
        ephemeral.forget_interrupts()
    try:
        result = lazy_click_app(app, LAZY_COMMANDS)(
            args=argv, standalone_mode=False, prog_name="civicvault")
    except CivicVaultError as exc:
        code = _fail(exc.diagnostics().splitlines()[0] if str(exc) else type(exc).__name__,
                     exc.exit_code)
    except click_exc.NoArgsIsHelpError as exc:
        sys.stdout.write(exc.ctx.get_help() + "\n" if exc.ctx is not None else "")
        code = 2
    except click_exc.UsageError as exc:
        hint = f" (try '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        code = _fail(_usage(exc.format_message().splitlines()[0], argv) + hint, 2)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        code = _fail("aborted", 2)
    except click_exc.ClickException as exc:
        code = _fail(_usage(exc.format_message().splitlines()[0], argv), 2)
    except KeyboardInterrupt:
        code = _fail("interrupted", INTERRUPTED)
    except Exception as exc:  # a storage fault, or a bug: never print its message
        from vault.errors import storage_fault

        fault = storage_fault(exc)
        if _interrupted(exc):  # Prefect may replace a Ctrl-C that lands in its engine
            code = _fail("interrupted", INTERRUPTED)
        elif fault is not None:
            code = _fail(fault.diagnostics(), fault.exit_code)
        else:
            code = _fail(f"internal error ({type(exc).__name__}); run with CIVICVAULT_DEBUG=1 "
                         "in a safe environment for details", 1)
        if os.environ.get("CIVICVAULT_DEBUG") == "1":
            raise
    except BaseException as exc:  # Prefect's TerminationSignal, unhandled: as Ctrl-C
        if not _terminated(exc):
            raise
        code = _fail("interrupted", INTERRUPTED)
    else:
        code = result if isinstance(result, int) else 0
        if code == INTERRUPTED:  # typer returns 130 for a Ctrl-C (or SIGTERM, see ephemeral)
            _fail("interrupted", code)
    return code


def run() -> None:
    sys.exit(main())
