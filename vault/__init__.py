"""The vault: storage, envelope encryption, PII detection, DP release, erasure, key
rotation. Every public operation takes a principal, asks the policy and writes the ledger:
``vault.Vault`` (``vault.service``) is the one object the shells call, one method each.

Public names load their module on first use, so ``import vault`` imports no heavy
package (Presidio, spaCy, OpenDP, Polars, SQLAlchemy are loaded by the operations
that need them). See docs/ARCHITECTURE.md for which module does what.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.lazy import lazy_names
from vault import allocators as _allocators

# before anything loads Polars, whose jemalloc reads its setting once (vault.allocators)
_allocators.configure()

if TYPE_CHECKING:  # the real names for type checkers; at run time they load lazily
    from vault import vocab
    from vault.access import Principal, authenticate, installed_policy
    from vault.attributes import read_attributes
    from vault.audit import audit_vault, summarize
    from vault.db import make_engine, migrate
    from vault.dp import ReleaseRequest, SegmentRequest, preview_release, run_release, run_segment
    from vault.errors import (
        BadInput,
        CivicVaultError,
        KeyUnavailable,
        NotInitialised,
        VerificationFailed,
    )
    from vault.home import VaultHome
    from vault.ingest import IngestReport, ingest_path, plan_ingest, store_source
    from vault.service import Vault
    from vault.setup import init_home
    from vault.transparency import checkpoint_store, publish_checkpoint
    from vault.verify_all import verify_everything

__all__ = [
    "BadInput",
    "CivicVaultError",
    "IngestReport",
    "KeyUnavailable",
    "NotInitialised",
    "Principal",
    "ReleaseRequest",
    "SegmentRequest",
    "Vault",
    "VaultHome",
    "VerificationFailed",
    "audit_vault",
    "authenticate",
    "checkpoint_store",
    "ingest_path",
    "init_home",
    "installed_policy",
    "make_engine",
    "migrate",
    "plan_ingest",
    "preview_release",
    "publish_checkpoint",
    "read_attributes",
    "run_release",
    "run_segment",
    "store_source",
    "summarize",
    "verify_everything",
    "vocab",
]

_WHERE: dict[str, str] = {
    "BadInput": "vault.errors",
    "CivicVaultError": "vault.errors",
    "IngestReport": "vault.ingest",
    "KeyUnavailable": "vault.errors",
    "NotInitialised": "vault.errors",
    "Principal": "vault.access",
    "ReleaseRequest": "vault.dp",
    "SegmentRequest": "vault.dp",
    "Vault": "vault.service",
    "VaultHome": "vault.home",
    "VerificationFailed": "vault.errors",
    "audit_vault": "vault.audit",
    "authenticate": "vault.access",
    "checkpoint_store": "vault.transparency",
    "ingest_path": "vault.ingest",
    "init_home": "vault.setup",
    "installed_policy": "vault.access",
    "make_engine": "vault.db",
    "migrate": "vault.db",
    "plan_ingest": "vault.ingest",
    "preview_release": "vault.dp",
    "publish_checkpoint": "vault.transparency",
    "read_attributes": "vault.attributes",
    "run_release": "vault.dp",
    "run_segment": "vault.dp",
    "store_source": "vault.ingest",
    "summarize": "vault.audit",
    "verify_everything": "vault.verify_all",
}

__getattr__, __dir__ = lazy_names(__name__, _WHERE, __all__)
