"""``python -m flows.cli``: the ``civicvault`` command."""

from flows.cli import run

run()
