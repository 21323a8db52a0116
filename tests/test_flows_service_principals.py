"""``civicvault deploy``'s service principals: scheduled flows act as an ingestor and an
auditor, never as admin; a revoked token is replaced by a new principal (names are never
reused), and the token files are private."""

from __future__ import annotations

import stat
from pathlib import Path

from flows.service_principals import AUDITOR, INGESTOR, ensure_service_principal
from vault.access import authenticate
from vault.db import make_engine
from vault.home import VaultHome
from vault.principals import revoke_principal
from vault.setup import init_home


def test_service_principals_are_made_once_reused_and_replaced_when_revoked(
    tmp_path: Path
) -> None:
    home = VaultHome(root=tmp_path / "home")
    init_home(home)
    engine = make_engine(home.db_url)
    try:
        admin = authenticate(engine, home, None)
        ingest_file = ensure_service_principal(engine, home, admin, *INGESTOR)
        audit_file = ensure_service_principal(engine, home, admin, *AUDITOR)
        assert stat.S_IMODE(ingest_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(ingest_file.parent.stat().st_mode) == 0o700
        ingestor = authenticate(engine, home, ingest_file.read_text().strip())
        auditor = authenticate(engine, home, audit_file.read_text().strip())
        assert (ingestor.id, ingestor.role) == ("svc-ingestor", "ingestor")
        assert (auditor.id, auditor.role) == ("svc-auditor", "compliance")

        token = ingest_file.read_text()
        assert ensure_service_principal(engine, home, admin, *INGESTOR) == ingest_file
        assert ingest_file.read_text() == token  # reused, not re-issued

        with engine.begin() as conn:
            revoke_principal(conn, "svc-ingestor")
        ensure_service_principal(engine, home, admin, *INGESTOR)
        again = authenticate(engine, home, ingest_file.read_text().strip())
        assert (again.id, again.role) == ("svc-ingestor-2", "ingestor")
    finally:
        engine.dispose()
