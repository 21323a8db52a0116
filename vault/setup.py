"""``civicvault init``: a new vault home, created whole or not at all.

The embedded home is built in a sibling temp folder and renamed into place at
the end, so a failure leaves no half-made vault behind.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from ledger import store as ledger_store
from ledger.entry import EntryDraft
from ledger.signer import Signer
from policies.load import default_policy_text
from vault import principals, vocab
from vault.db import make_engine, migrate
from vault.errors import BadInput
from vault.home import VaultHome, write_secret_file
from vault.keys import KEK_ENV, FileKeyProvider


@dataclass(frozen=True)
class InitReport:
    home: str
    identity: str
    database: str
    admin_token_path: str
    vkey: str


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def init_home(home: VaultHome) -> InitReport:
    if home.identity_path.exists():
        raise BadInput(f"a vault already exists at {home.root}")
    if home.root.exists() and not _is_empty_dir(home.root):
        raise BadInput(f"{home.root} exists and is not an empty folder")
    staging = home.root.with_name(f".{home.root.name}.init-{secrets.token_hex(4)}")
    staging.mkdir(mode=0o700, parents=True)
    stage = VaultHome(root=staging, db_url_override=home.db_url_override)
    try:
        identity = f"civicvault.local/{secrets.token_hex(8)}"
        engine = make_engine(stage.db_url)
        try:
            migrate(engine)
            if not os.environ.get(KEK_ENV):
                FileKeyProvider.create(stage.kek_path)
            signer = Signer.generate(identity)
            signer.save(stage.signing_key_path)
            policy_bytes = default_policy_text().encode("utf-8")
            stage.policy_path.write_bytes(policy_bytes)
            stage.checkpoints_dir.mkdir(mode=0o700)
            with engine.begin() as conn:
                token = principals.add_principal(conn, "admin", "admin")
                ledger_store.append(conn, [EntryDraft(
                    actor="admin", action=vocab.VAULT_INIT, resource=vocab.VAULT,
                    details={"origin": identity, "backend": engine.dialect.name}), EntryDraft(
                    actor="admin", action=vocab.POLICY_APPLIED, resource=vocab.POLICY,
                    data_hash=hashlib.sha256(policy_bytes).hexdigest(),
                    details={"previous": None, "default": True})])
            write_secret_file(stage.admin_token_path, (token + "\n").encode("ascii"))
            stage.identity_path.write_text(identity + "\n", encoding="ascii")
        finally:
            engine.dispose()
        if home.root.exists():
            home.root.rmdir()
        staging.rename(home.root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return InitReport(
        home=str(home.root), identity=identity,
        database="sqlite (embedded)" if home.db_url_override is None else engine.dialect.name,
        admin_token_path=str(home.admin_token_path), vkey=signer.vkey(),
    )
