"""Flow ``erasure``: work through a file of erasure requests, one task per request.

The requests file is JSON Lines, one request a line::

    {"id": "REQ-2026-0042", "dataset": "voters", "match": {"voter_id": "NC000123456"}}

Its values identify people, so they never become Prefect parameters, results or
log lines: the flow receives the file's *path*, or a reference to it
(``flow_runtime.path_ref_for``: a file name may name a person, and Prefect stores and
shows parameters); each task receives that same value and the line number, reads its
own line and calls ``Vault.erase`` (crypto-shredding, ledgered). Results and logs
carry the line number, the request id (when it is a plain ticket id) and counts.
Erasing is idempotent: a request already done finds nobody and erases 0 subjects.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from flows import prefect_env

prefect_env.configure()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402

from flows.flow_runtime import (  # noqa: E402
    principal_for,
    scrubbed,
    typed_path,
    vault_for,
    vault_home,
)
from flows.ingest import retry_if_transient  # noqa: E402
from vault.errors import BadInput  # noqa: E402
from vault.service import Principal  # noqa: E402

TICKET_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def request_lines(path: Path) -> list[int]:
    """Line numbers (1-based) of the non-blank lines of a requests file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise BadInput("the erasure requests file cannot be read") from None
    return [n for n, line in enumerate(lines, start=1) if line.strip()]


def read_request(path: Path, line_no: int) -> tuple[str | None, str, dict[str, str]]:
    """(ticket id or None, dataset, match) of one line; errors name the line only (an
    ``OSError``'s text would carry the file's path, and a task's error is stored)."""
    try:
        line = path.read_text(encoding="utf-8").splitlines()[line_no - 1]
    except (OSError, UnicodeDecodeError):
        raise BadInput("the erasure requests file cannot be read") from None
    except IndexError:
        raise BadInput(f"erasure request on line {line_no} is gone (the requests file "
                       "changed during the run)") from None
    try:
        doc = json.loads(line)
        dataset = doc["dataset"]
        match = {str(k): str(v) for k, v in doc["match"].items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BadInput(f"erasure request on line {line_no} is malformed (want "
                       '{"dataset": ..., "match": {COLUMN: VALUE}})') from None
    if not isinstance(dataset, str) or not match:
        raise BadInput(f"erasure request on line {line_no} names no dataset or no match")
    ticket = doc.get("id")
    ticket_id = ticket if isinstance(ticket, str) and TICKET_ID.fullmatch(ticket) else None
    return ticket_id, dataset, match


@task(name="erase-request", cache_policy=NO_CACHE, persist_result=False, retries=3,
      retry_delay_seconds=exponential_backoff(backoff_factor=0.5),
      retry_condition_fn=retry_if_transient, task_run_name="erase-line-{line_no}")
def erase_request(home: str, principal: Principal, requests_file: str,
                  line_no: int) -> dict[str, Any]:
    """Crypto-shred the subjects one request matches (reads the values itself);
    ``requests_file`` is the flow's own parameter, a reference or a path."""
    vh = vault_home(home)
    ticket, dataset, match = read_request(typed_path(vh, requests_file), line_no)
    with scrubbed("erase", line=line_no):
        report, _ = vault_for(vh, principal).erase(dataset, match)
    return {"line": line_no, "id": ticket, "dataset": dataset,
            "subjects_erased": report.subjects_erased,
            "batches_resealed": report.batches_resealed}


@flow(name="erasure", persist_result=False, log_prints=False)
def erasure(requests_file: str, home: str | None = None,
            token_file: str | None = None) -> dict[str, Any]:
    """Carry out every erasure request in ``requests_file`` (JSON Lines).

    ``requests_file``: the file, or a reference to it (``flow_runtime.path_ref_for``, kept
    for the whole run), so that Prefect's stored parameters hold no path. The tasks get
    the same value, never a path the flow resolved."""
    vh = vault_home(home)
    principal = principal_for(vh, token_file)
    lines = request_lines(typed_path(vh, requests_file))
    futures = [erase_request.submit(str(vh.root), principal, requests_file, n) for n in lines]
    done = [f.result() for f in futures]
    erased = sum(int(d["subjects_erased"]) for d in done)
    get_run_logger().info("%d erasure requests, %d subjects erased", len(done), erased)
    return {"requests": len(done), "subjects_erased": erased, "results": done}
