"""civicvault's Prefect flows and command line."""

import vault  # noqa: F401  (sets the allocators up before a flow loads Polars)
