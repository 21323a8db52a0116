"""A temporary Prefect API server that this process owns, start to finish.

Prefect starts an "ephemeral" server on its own when a flow runs without
``PREFECT_API_URL``; it waits 20 s for it by default and, when the wait runs out
(a busy machine takes 30 s and more), the next Prefect call starts another one
and the first is orphaned. civicvault never lets Prefect do that: every path that
runs a flow without a configured API (``demo``, ``ingest --prefect``, ``release
--prefect``) goes through :func:`prefect_api`, which

- starts the same server command Prefect would (uvicorn on Prefect's app factory,
  UI off) in its own process group, with ``PR_SET_PDEATHSIG`` so the server dies
  with this process even on ``SIGKILL``;
- waits for ``/health`` up to ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``
  (civicvault's default: 300 s, see ``flows.prefect_env``), failing with one line
  (:class:`PrefectServerUnavailable`) if it never answers;
- points Prefect at it (``PREFECT_API_URL``, also for Prefect's background workers);
- and, whatever happens (success, an error, ``Ctrl-C``, ``SIGTERM`` turned into
  ``KeyboardInterrupt`` by :func:`terminate_as_interrupt`), drains Prefect's log and
  event workers, then stops the whole process group.

Launching is split from waiting so the demo can boot the server while it
initialises the vault and generates data.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from ledger.errors import PrefectServerUnavailable

TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT = 300.0
_PR_SET_PDEATHSIG = 1
_PORT_IN_USE_EXIT = 3  # uvicorn's exit code when it cannot bind


def startup_timeout() -> float:
    """Seconds to wait for the server: ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_TIMEOUT
    except ValueError:
        raise PrefectServerUnavailable(f"{TIMEOUT_ENV} must be a number of seconds") from None
    return value if value > 0 else DEFAULT_TIMEOUT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class EphemeralServer:
    """One uvicorn process serving Prefect's API on a loopback port."""

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout if timeout is not None else startup_timeout()
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._ready = False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def launch(self) -> None:
        """Start the server process (returns at once; :meth:`wait_ready` waits)."""
        spec = importlib.util.find_spec("prefect")  # located, not imported (settings stay unread)
        if spec is None or not spec.submodule_search_locations:
            raise PrefectServerUnavailable("Prefect is not installed")
        app_dir = Path(next(iter(spec.submodule_search_locations))).parent
        self.port = _free_port()
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1"}
        env.pop("PREFECT_API_URL", None)
        self.process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
            [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory",
             "prefect.server.api.server:create_app", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent,  # from the main thread: PDEATHSIG follows it
        )

    def wait_ready(self) -> str:
        """Block until ``/health`` answers; return the API URL or raise one clear line."""
        if self._ready:
            return self.api_url
        if self.process is None:
            self.launch()
        deadline = time.monotonic() + self.timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                code = self.process.poll()
                if code == _PORT_IN_USE_EXIT:  # lost the port race: take another one
                    self.launch()
                    continue
                if code is not None:
                    raise PrefectServerUnavailable(
                        f"the temporary Prefect server exited with code {code} while starting")
                with suppress(httpx.HTTPError):
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        self._ready = True
                        return self.api_url
                time.sleep(0.2)
        raise PrefectServerUnavailable(
            f"the temporary Prefect server did not start within {self.timeout:g} s "
            f"(a busy machine? raise {TIMEOUT_ENV}, or set PREFECT_API_URL to a running "
            "server)")

    def stop(self) -> None:
        """Stop the server's whole process group (idempotent)."""
        proc, self.process = self.process, None
        self._ready = False
        if proc is None:
            return
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _drain_prefect_workers() -> None:
    """Send Prefect's buffered logs and events before the server goes away."""
    if "prefect" not in sys.modules:
        return
    with suppress(Exception):
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker
        from prefect.utilities.asyncutils import run_coro_as_sync

        async def drain() -> None:
            import inspect

            with suppress(RuntimeError):
                logs: object = APILogWorker.instance().drain()
                if inspect.isawaitable(logs):
                    await logs
            events: object = EventsWorker.drain_all()
            if inspect.isawaitable(events):
                await events

        run_coro_as_sync(drain())


@contextmanager
def _pointed_at(api_url: str) -> Iterator[None]:
    """Prefect uses ``api_url`` inside the block (environment, and settings if imported)."""
    old = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api_url
    try:
        if "prefect" in sys.modules:  # settings were read at import: override them too
            import prefect.context
            import prefect.settings

            with prefect.settings.temporary_settings(
                    updates={prefect.settings.PREFECT_API_URL: api_url}):
                glob = getattr(prefect.context, "_temporary_global_settings_context", None)
                if glob is None:
                    yield
                else:
                    with glob(prefect.context.get_settings_context()):
                        yield
        else:
            yield
    finally:
        if old is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = old


@contextmanager
def owned_server(server: EphemeralServer) -> Iterator[EphemeralServer]:
    """Stop ``server`` when the block ends, however it ends."""
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def serving(server: EphemeralServer) -> Iterator[str]:
    """Wait for ``server`` and run the block against it; drain Prefect's workers after."""
    url = server.wait_ready()
    with _pointed_at(url):
        try:
            yield url
        finally:
            _drain_prefect_workers()


def configured_api_url() -> str | None:
    """``PREFECT_API_URL`` from the environment, or from Prefect's settings once imported
    (e.g. inside ``prefect_test_harness``)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if "prefect.settings" in sys.modules:
        from prefect.settings import PREFECT_API_URL

        return PREFECT_API_URL.value() or None
    return None


@contextmanager
def prefect_api() -> Iterator[str | None]:
    """The configured Prefect API, else a temporary server owned by this block."""
    from flows import prefect_env  # noqa: F401  (Prefect reads its settings at import)
    from flows.prefect_console import cli_console

    configured = configured_api_url()
    if configured:
        with cli_console():
            yield configured
        return
    with terminate_as_interrupt(), owned_server(EphemeralServer()) as server:
        server.launch()
        with serving(server) as url, cli_console():
            yield url


_SIGNALS_RECEIVED: list[int] = []


def interrupt_received() -> bool:
    """Whether a ``SIGINT``, ``SIGTERM`` or ``SIGHUP`` reached a
    :func:`terminate_as_interrupt` block since :func:`forget_interrupts` (the CLI calls it
    as each command starts, and reads this for the command's exit code)."""
    return bool(_SIGNALS_RECEIVED)


def forget_interrupts() -> None:
    """Start a command with no signal on record (several commands run in one process)."""
    _SIGNALS_RECEIVED.clear()


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Inside the block ``SIGTERM`` (and ``SIGHUP``) raise ``KeyboardInterrupt`` like
    ``Ctrl-C`` does, so every ``finally`` (server stop, temp folder removal) runs; and an
    interrupt Python would ignore (raised inside a finaliser) is delivered again.

    Any other error a finaliser raises, which Python prints with the object's repr and a
    traceback, is one line naming its type.

    Each signal is also recorded (:func:`interrupt_received`): a library that catches the
    ``KeyboardInterrupt`` and fails later with an error of its own, outside that handling
    (so nothing chains the two), still ends the command as interrupted, not as an
    internal error."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        _SIGNALS_RECEIVED.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    previous_hook = sys.unraisablehook

    def deliver_again(unraisable: Any) -> None:
        # an interrupt that lands in a finaliser (a weakref callback, a __del__) is
        # "ignored" by Python: printed with a traceback and lost, and the command runs on;
        # send it again once this hook has returned (raised in here it is ignored too).
        # While a flow runs, Prefect's own SIGTERM handler raises its TerminationSignal
        # instead (seen once in a full run of the suite: the demo, sent SIGTERM, ran on to
        # exit 0 with that traceback): the same signal goes again, and Prefect's handler,
        # or this block's once Prefect has put it back, ends the command
        exc = unraisable.exc_value
        termination = getattr(sys.modules.get("prefect.exceptions"), "TerminationSignal", None)
        if isinstance(exc, KeyboardInterrupt):
            again = signal.SIGINT
        elif termination is not None and isinstance(exc, termination):
            again = signal.Signals(getattr(exc, "signal", signal.SIGTERM))
        elif previous_hook is sys.__unraisablehook__:
            # Python's own hook would print the object's repr, a traceback and the
            # message, any of which may quote a value: a command says the type only
            sys.stderr.write(f"warning: an error in a finaliser was ignored "
                             f"({type(exc).__name__})\n")
            return
        else:  # a hook someone installed (a test runner's): theirs to handle
            previous_hook(unraisable)
            return
        threading.Timer(0.05, signal.raise_signal, (again,)).start()

    caught = [signal.SIGTERM, signal.SIGHUP]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        caught.append(signal.SIGINT)  # the same KeyboardInterrupt, recorded too
    previous = {s: signal.signal(s, interrupt) for s in caught}
    sys.unraisablehook = deliver_again
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for s, handler in previous.items():
            signal.signal(s, handler)
