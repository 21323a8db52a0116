"""Prefect's environment, fixed before Prefect is imported anywhere in this process.

Importing this module (every ``flows`` module that uses Prefect does so first):

- turns telemetry off (``DO_NOT_TRACK=1``, ``PREFECT_SERVER_ANALYTICS_ENABLED=false``);
- points ``PREFECT_HOME`` at ``<vault home>/prefect`` when it is not set, so Prefect's
  database, logs and any result files stay inside the vault home (mode 0700) instead of
  the operator's ``~/.prefect``;
- keeps results unpersisted by default (``PREFECT_RESULTS_PERSIST_BY_DEFAULT=false``)
  and Prefect's own loggers off the third-party ones (no ``EXTRA_LOGGERS``).

Prefect reads its settings at import time, so this must run before ``import prefect``.
"""

from __future__ import annotations

import os
from pathlib import Path

from vault.home import VaultHome

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}
SAFE_DEFAULTS = {
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "",
    "PREFECT_LOGGING_LOG_PRINTS": "false",
    # a busy machine takes 30-130 s to boot a temporary server (Prefect waits 20 s)
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
}
DASK_ADDRESS_ENV = "CIVICVAULT_DASK_ADDRESS"


def prefect_home_for(home: VaultHome) -> Path:
    """Where Prefect keeps its state for this vault home."""
    return home.root / "prefect"


def configure(home: VaultHome | None = None, *, force_home: bool = False) -> Path:
    """Set the telemetry-off and private-home environment; return PREFECT_HOME.

    With ``force_home`` the PREFECT_HOME of ``home`` replaces any inherited one (the
    demo uses it for its fresh vault home). Settings already read by an imported
    Prefect are not changed by a later call: call this first.
    """
    for name, value in TELEMETRY_OFF.items():
        os.environ[name] = value
    for name, value in SAFE_DEFAULTS.items():
        os.environ.setdefault(name, value)
    if force_home or not os.environ.get("PREFECT_HOME"):
        vault_home = home or VaultHome.from_env()
        if force_home or vault_home.root.is_dir():
            target = prefect_home_for(vault_home)
        else:  # no vault here (yet): nothing to keep, and Prefect cannot make <missing>/prefect
            target = _scratch_home()
        os.environ["PREFECT_HOME"] = str(target)
    # not created here: ``init`` wants an empty home; Prefect makes the folder (0700) itself
    return Path(os.environ["PREFECT_HOME"]).expanduser()


def _scratch_home() -> Path:
    """A private PREFECT_HOME for this process only, removed when it exits."""
    import atexit
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="civicvault-prefect-"))
    atexit.register(shutil.rmtree, path, True)
    return path


configure()

from flows.prefect_console import SERVED_ENV, served_run_console  # noqa: E402 (stdlib only)

if os.environ.get(SERVED_ENV) == "1":  # a flow-run process of ``civicvault deploy``
    served_run_console()
