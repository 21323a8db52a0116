"""Data keys of each dataset: created on demand, wrapped by the KEK, unwrapped once per process.

Purposes: ``attr`` (column blobs), ``subject_wrap`` (wraps per-subject keys),
``blind`` (blind-index HMAC key), ``fingerprint`` (row-change detection HMAC key).
Every data key counts the messages it sealed; one that nears the random-nonce
limit is retired and a new version takes over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, select, update

from vault import _aead, vocab
from vault.errors import KeyUnavailable
from vault.keys import KeyProvider
from vault.schema import DataKey

PURPOSES = ("attr", "subject_wrap", "blind", "fingerprint")
_T = DataKey.__table__  # type: ignore[attr-defined]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def wrap_context(dataset_id: int, purpose: str, version: int) -> bytes:
    return _aead.associated_data("data-key", dataset_id, purpose, version)


@dataclass(frozen=True)
class ActiveKey:
    id: int
    version: int
    key: bytes = field(repr=False)


def _ledger_keys(conn: Connection, action: str, ids: list[int], details: dict[str, object]
                 ) -> None:
    """A data-key change on the ledger with the new digest of every row it touched
    (``vault.manifest.key_rows``), in the same transaction."""
    from ledger import store as ledger_store
    from ledger.entry import EntryDraft
    from vault.manifest import key_rows

    ledger_store.append(conn, [EntryDraft(
        actor="vault", action=action, resource=vocab.DATA_KEYS,
        details={**details, "key_rows": key_rows(conn, ids)})])


class Keyring:
    """Unwrapped data keys, cached by id for the life of this object."""

    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider
        self._cache: dict[int, bytes] = {}

    def active(self, conn: Connection, dataset_id: int, purpose: str) -> ActiveKey:
        """The active key for (dataset, purpose), created if there is none."""
        row = conn.execute(
            select(_T.c.id, _T.c.version, _T.c.kek_version, _T.c.wrapped)
            .where(_T.c.dataset_id == dataset_id, _T.c.purpose == purpose, _T.c.state == "active")
            .order_by(_T.c.version.desc())
            .limit(1)
        ).first()
        if row is None:
            return self.create(conn, dataset_id, purpose)
        return ActiveKey(row.id, row.version, self._unwrap(row.id, dataset_id, purpose,
                                                          row.version, row.kek_version,
                                                          row.wrapped))

    def create(self, conn: Connection, dataset_id: int, purpose: str) -> ActiveKey:
        """A new version for (dataset, purpose); the previous active one is retired."""
        last = conn.execute(
            select(_T.c.version)
            .where(_T.c.dataset_id == dataset_id, _T.c.purpose == purpose)
            .order_by(_T.c.version.desc())
            .limit(1)
        ).scalar()
        version = (last or 0) + 1
        retired = [int(i) for i in conn.execute(
            update(_T)
            .where(_T.c.dataset_id == dataset_id, _T.c.purpose == purpose, _T.c.state == "active")
            .values(state="retired").returning(_T.c.id)
        ).scalars()]
        key = _aead.random_key()
        kek_version = self.provider.current_version()
        wrapped = self.provider.wrap(kek_version, key, wrap_context(dataset_id, purpose, version))
        key_id = conn.execute(
            _T.insert().values(
                dataset_id=dataset_id, purpose=purpose, version=version, kek_version=kek_version,
                wrapped=wrapped, messages_sealed=0, state="active", created=now(),
            ).returning(_T.c.id)
        ).scalar_one()
        self._cache[key_id] = key
        _ledger_keys(conn, vocab.KEYS_CREATED, [*retired, int(key_id)],
                     {"key": int(key_id), "dataset": int(dataset_id), "purpose": purpose,
                      "version": int(version)})
        return ActiveKey(key_id, version, key)

    def by_id(self, conn: Connection, key_id: int) -> bytes:
        if key_id in self._cache:
            return self._cache[key_id]
        row = conn.execute(
            select(_T.c.dataset_id, _T.c.purpose, _T.c.version, _T.c.kek_version, _T.c.wrapped)
            .where(_T.c.id == key_id)
        ).first()
        if row is None:
            raise KeyUnavailable(f"data key {key_id} does not exist")
        return self._unwrap(key_id, row.dataset_id, row.purpose, row.version, row.kek_version,
                            row.wrapped)

    def _unwrap(self, key_id: int, dataset_id: int, purpose: str, version: int,
                kek_version: int, wrapped: bytes) -> bytes:
        if key_id not in self._cache:
            self._cache[key_id] = self.provider.unwrap(
                kek_version, wrapped, wrap_context(dataset_id, purpose, version)
            )
        return self._cache[key_id]

    def count_sealed(self, conn: Connection, key_id: int, n: int) -> None:
        """Record ``n`` more messages sealed under ``key_id``; refuse past the nonce limit."""
        sealed = conn.execute(
            update(_T).where(_T.c.id == key_id)
            .values(messages_sealed=_T.c.messages_sealed + n)
            .returning(_T.c.messages_sealed)
        ).scalar_one()
        if sealed > _aead.MAX_MESSAGES_PER_KEY:
            raise KeyUnavailable(f"data key {key_id} reached its message limit; rotate keys")

    def needs_rotation(self, conn: Connection, key_id: int, upcoming: int) -> bool:
        sealed = conn.execute(select(_T.c.messages_sealed).where(_T.c.id == key_id)).scalar_one()
        return int(sealed) + upcoming > _aead.MAX_MESSAGES_PER_KEY // 2

    def unwrap_live(self, conn: Connection) -> int:
        """Unwrap (and cache) every data key not yet destroyed; returns how many.

        Rotation calls this before it asks the provider for a new KEK version, so
        a key that does not unwrap fails the rotation without adding a version."""
        rows = conn.execute(
            select(_T.c.id, _T.c.dataset_id, _T.c.purpose, _T.c.version, _T.c.kek_version,
                   _T.c.wrapped).where(_T.c.state != "destroyed")
        ).all()
        for r in rows:
            self._unwrap(r.id, r.dataset_id, r.purpose, r.version, r.kek_version, r.wrapped)
        return len(rows)

    def rewrap_all(self, conn: Connection, kek_version: int) -> int:
        """Rewrap every live data key under KEK ``kek_version``; returns how many changed.

        Destroyed keys (crypto-shredded: their wrapped bytes are gone) are skipped."""
        rows = conn.execute(
            select(_T.c.id, _T.c.dataset_id, _T.c.purpose, _T.c.version, _T.c.kek_version,
                   _T.c.wrapped).where(_T.c.kek_version != kek_version,
                                       _T.c.state != "destroyed")
        ).all()
        for r in rows:
            ctx = wrap_context(r.dataset_id, r.purpose, r.version)
            key = self._unwrap(r.id, r.dataset_id, r.purpose, r.version, r.kek_version, r.wrapped)
            conn.execute(update(_T).where(_T.c.id == r.id).values(
                wrapped=self.provider.wrap(kek_version, key, ctx), kek_version=kek_version))
        return len(rows)
