"""Ingest: read a file, classify its columns once, prepare each batch per policy, store it.

Streaming in two passes over the file, each in bounded memory
(``vault.pii.limits.ReaderLimits.chunk_bytes``): :func:`plan_ingest` reads it
once to hash it, check every row (so nothing of a bad file is stored), note
where each batch starts and keep an evenly spaced sample that the classifier
sees; :func:`store_source` reads it again, batch by batch, and stores it.
Batch ``i`` is rows ``[i * batch_rows, (i + 1) * batch_rows)`` whatever the
chunk size, so the vault's contents do not depend on the memory setting.

Prepared batch (see ``vault.store``): direct identifiers and the originals of
generalised or redacted columns are sealed per row under the subject's key;
everything a release may need (special-category, quasi-identifiers in their
generalised form, redacted free text, harmless columns) goes to sealed
attribute columns; ``drop`` columns are not stored at all.

Idempotent twice over: a source whose content hash is known adds nothing, and
within a source each batch lands once (``(source, batch_index)`` is unique).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, func, select

from ledger import store as ledger_store
from ledger.entry import EntryDraft
from policies.validate import parse_name
from vault import access as _access
from vault import allocators, manifest, vocab
from vault.errors import BadInput
from vault.home import VaultHome
from vault.identity import (
    PERSON_COLUMN,
    DigestResolver,
    IdentityPlan,
    PersonDigests,
    check_temp_space,
    dedup_column,
    plan_identity,
    resolve,
)
from vault.identity_cache import cache_limit
from vault.keyring import Keyring, now
from vault.keys import provider_for
from vault.pii.classifier import ColumnClass, apply_policy, classify_frame
from vault.pii.limits import ReaderLimits, limits_from_env
from vault.pii.readers import DEFAULT_LABEL, SourceInfo, iter_batches, scan_source
from vault.store import (
    T_BATCH,
    T_DATASET,
    T_SOURCE,
    BatchKeys,
    ColumnLayout,
    IdentityCache,
    StoredColumn,
    dataset_id,
    write_batch,
    write_batches,
)

BATCH_ROWS = 100_000
PARALLEL_TEXTS = 2_000  # from this many distinct texts, redaction uses every core
Progress = Callable[[int, int], None]  # (rows stored so far, rows in the file)

# Lookup entities and how their values are normalised for blind indexes, in the
# order that decides which one identifies a subject: the vocabulary's.
LOOKUP_NORMALIZERS = vocab.LOOKUP_NORMALIZERS


@dataclass(frozen=True)
class IngestPlan:
    """Ids and paths only: safe to pass through Prefect."""

    source_id: int
    source_hash: str
    dataset: str
    path: str
    rows: int
    batch_rows: int
    batches: int
    already_ingested: bool
    columns: list[dict[str, Any]] = field(default_factory=list)
    encoding: str = "utf-8"
    batch_starts: list[tuple[int, int]] = field(default_factory=list)  # (byte offset, line)
    label: str = DEFAULT_LABEL  # how errors name the file (source_label): never its path

    def start_of(self, batch_index: int) -> tuple[int, int, int] | None:
        """Where batch ``batch_index`` starts in the file: (byte offset, line, row)."""
        if not 0 <= batch_index < len(self.batch_starts):
            return None
        offset, line = self.batch_starts[batch_index]
        return offset, line, batch_index * self.batch_rows

    def classes(self) -> list[ColumnClass]:
        """The column classes decided at planning time (batches never re-classify)."""
        return [ColumnClass(c["name"], c["entity"], c["category"], c["confidence"],
                            c["handling"], c["lookup_key"], evidence=c.get("evidence", "name"))
                for c in self.columns]


@dataclass(frozen=True)
class IngestReport:
    dataset: str
    rows_added: int
    rows_updated: int
    duplicates_skipped: int
    batches: int
    columns: list[dict[str, Any]]
    already_ingested: bool = False
    erased_suppressed: int = 0  # rows of erased subjects that were not added back
    people: int | None = None  # distinct people in the source (vault.identity)
    identity: dict[str, Any] | None = None  # how rows were resolved to people (counts only)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def source_hasher() -> Any:
    """The running hash that identifies a source (its bytes, streamed)."""
    return hashlib.sha256(b"civicvault/source/v1")


def file_digest(path: Path) -> str:
    h = source_hasher()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return str(h.hexdigest())


def source_label(index: int, count: int, *, folder: bool) -> str:
    """How errors name the ``index``-th (1-based) of ``count`` files given to ingest: by
    its place in the folder, never by its path or name (the caller typed them, and a
    file name may name a person)."""
    return f"file {index} of {count} in the folder (by name)" if folder else DEFAULT_LABEL


def scan_file(path: Path, batch_rows: int = BATCH_ROWS,
              limits: ReaderLimits | None = None,
              label: str = DEFAULT_LABEL) -> tuple[SourceInfo, str]:
    """One streaming pass: every check of the readers, the sample, and the content hash."""
    h = source_hasher()
    info = scan_source(path, batch_rows=batch_rows, limits=limits or limits_from_env(),
                       label=label, on_bytes=h.update)
    return info, str(h.hexdigest())


def layout_for(classes: list[ColumnClass], declared: tuple[str, ...] = (),
               rows_per_person: int = 1) -> tuple[ColumnLayout, dict[str, str]]:
    """Storage layout from column classes; also returns original-column -> sealed name.

    ``declared``: the policy's person key columns (stored as direct identifiers with
    blind indexes); ``rows_per_person``: the policy's contribution bound (only
    datasets of one row per person deduplicate, see ``vault.identity``). Every
    layout carries the sealed pseudonymous person column ``__person``.
    """
    stored: list[StoredColumn] = []
    originals: dict[str, str] = {}
    for c in classes:
        if c.handling == "drop" and c.name not in declared:
            continue
        lookup = LOOKUP_NORMALIZERS.get(c.entity) if c.lookup_key else None
        if c.name in declared:
            stored.append(StoredColumn(c.name, "direct", "id"))
        elif c.category == "direct" or c.handling == "tokenize":
            stored.append(StoredColumn(c.name, "direct", lookup))
        elif c.handling in ("generalize", "redact"):
            # the original, sealed per subject; the generalised/redacted form for releases
            sealed_name = f"{c.name}__original"
            originals[c.name] = sealed_name
            stored.append(StoredColumn(sealed_name, "direct"))
            stored.append(StoredColumn(c.name, "attribute"))
        else:
            stored.append(StoredColumn(c.name, "attribute"))
    stored.append(StoredColumn(PERSON_COLUMN, "attribute"))
    identity = dedup_column(plan_identity(classes, declared), rows_per_person)
    if identity not in {c.name for c in stored if c.lookup is not None}:
        identity = None  # deduplication needs the column's blind index
    return ColumnLayout(columns=tuple(stored), identity=identity), originals


def identity_for(home: VaultHome, dataset: str) -> tuple[tuple[str, ...], int, int]:
    """The policy's (person key columns, rows per person, max people) for ``dataset``."""
    unit = _access.installed_policy(home).privacy_unit(dataset)
    return tuple(unit.person_key), int(unit.rows_per_person), int(unit.max_people)


def person_keys(df: pl.DataFrame, classes: list[ColumnClass],
                declared: tuple[str, ...]) -> tuple[pl.Series, dict[str, Any]]:
    """Every row's person key over the *whole* source (plaintext, memory only) + counts."""
    plan: IdentityPlan = plan_identity(classes, declared)
    keys, report = resolve(df, plan)
    return keys, {**report.to_json(), "order": plan.to_json()}


def prepare_batch(frame: pl.DataFrame, classes: list[ColumnClass],
                  originals: dict[str, str], persons: pl.Series | None = None,
                  declared: tuple[str, ...] = ()) -> pl.DataFrame:
    """Apply each column's handling, vectorised; free text is redacted in batches.

    ``persons``: the rows' person keys (``person_keys``, plaintext) or pseudonyms
    (``resolve_people``), sealed as ``__person`` (``vault.store`` hashes plaintext keys
    first); without them each row is a person of its own.
    """
    from vault.pii.freetext import redact_texts
    from vault.pii.generalize import generalize_frame

    general = generalize_frame(frame, classes)
    out: dict[str, pl.Series] = {}
    for c in classes:
        if c.handling == "drop" and c.name not in declared:
            continue
        col = frame.get_column(c.name)
        if c.name in originals:
            out[originals[c.name]] = col.alias(originals[c.name])
            if c.handling == "generalize":
                out[c.name] = general.get_column(c.name)
            else:
                out[c.name] = _redact_distinct(col, redact_texts)
        else:
            out[c.name] = col
    if persons is None:
        persons, _ = resolve(frame, plan_identity([]))
    out[PERSON_COLUMN] = persons.alias(PERSON_COLUMN)
    return pl.DataFrame(list(out.values()))


def classify_for(home: VaultHome, df: pl.DataFrame) -> list[ColumnClass]:
    """Column classes with the installed policy's handling and lookup entities (cached)."""
    policy = _access.installed_policy(home)
    return apply_policy(classify_frame(df), policy.pii_handling, policy.lookup_entities)


def _redact_distinct(col: pl.Series, redact: Callable[..., list[str | None]]) -> pl.Series:
    """Redact each distinct text once (notes repeat a lot), on all cores when many."""
    distinct = col.drop_nulls().unique(maintain_order=True)
    if distinct.len() == 0:
        return col.cast(pl.Utf8)
    many = distinct.len() >= PARALLEL_TEXTS
    redacted = pl.Series(redact(distinct, n_process=None if many else 1), dtype=pl.Utf8)
    mapping = pl.DataFrame({"_text": distinct.cast(pl.Utf8), "_redacted": redacted})
    joined = col.cast(pl.Utf8).to_frame("_text").join(mapping, on="_text", how="left",
                                                      maintain_order="left")
    return joined.get_column("_redacted").alias(col.name)


def _columns_report(classes: list[ColumnClass]) -> list[dict[str, Any]]:
    return [{"name": c.name, "entity": c.entity, "category": c.category,
             "confidence": round(float(c.confidence), 3), "handling": c.handling,
             "lookup_key": bool(c.lookup_key), "evidence": c.evidence} for c in classes]


def plan_ingest(engine: Engine, home: VaultHome, principal: _access.Principal, path: Path,
                dataset: str, *, batch_rows: int = BATCH_ROWS,
                limits: ReaderLimits | None = None, label: str = DEFAULT_LABEL) -> IngestPlan:
    """Read the file once (checks, hash, sample), register the source (by content hash)
    and the dataset; classify once, from the sample. Errors name the file as ``label``."""
    allocators.mode()  # bad settings are refused before the file is read
    cache_limit()
    if not path.is_file():
        raise BadInput("the file given to ingest does not exist")  # never its path
    parse_name(dataset, "dataset")
    info, digest = scan_file(path, batch_rows, limits, label)
    df = info.sample
    classes = classify_for(home, df)
    declared, per_person, max_people = identity_for(home, dataset)
    layout, _ = layout_for(classes, declared, per_person)
    batches = max(1, -(-info.rows // batch_rows))
    with _access.access(engine, home, principal, "ingest", vocab.dataset(dataset)) as conn:
        ds_row = conn.execute(select(T_DATASET.c.id, T_DATASET.c.columns_json)
                              .where(T_DATASET.c.name == dataset)).first()
        if ds_row is not None:
            known = ColumnLayout.from_json(ds_row.columns_json)
            if sorted(c.name for c in known.columns) != sorted(c.name for c in layout.columns):
                have = {c.name for c in layout.columns}
                want = {c.name for c in known.columns}
                missing, extra = sorted(want - have), sorted(have - want)
                raise BadInput(  # header names only, never values
                    f"{label} does not have the columns of dataset '{dataset}'"
                    + (f"; missing: {', '.join(missing)}" if missing else "")
                    + (f"; not in the dataset: {', '.join(extra)}" if extra else ""))
        stored_rows = 0 if ds_row is None else int(conn.execute(
            select(func.coalesce(func.sum(T_BATCH.c.rows), 0))
            .where(T_BATCH.c.dataset_id == ds_row.id)).scalar_one())
        src = None if ds_row is None else conn.execute(select(T_SOURCE.c.id).where(
            T_SOURCE.c.dataset_id == ds_row.id, T_SOURCE.c.content_hash == digest)).scalar()
        done, done_rows = (0, 0) if src is None else _stored_of(conn, int(src))
        if done < batches:  # work left: checked before anything is written
            if stored_rows - done_rows + info.rows > max_people * per_person:
                raise BadInput(f"{label} would take dataset '{dataset}' past the policy's "
                               "public bound (privacy_unit max_people x rows_per_person rows)")
            check_temp_space(info.rows, plan_identity(classes, declared))
        ds = dataset_id(conn, dataset, create_with=(
            hashlib.sha256(",".join(df.columns).encode()).hexdigest(),
            layout.to_json(classes=_columns_report(classes))))
        if src is None:
            src = conn.execute(T_SOURCE.insert().values(
                dataset_id=ds, content_hash=digest, rows=info.rows, batches=batches,
                created=now()).returning(T_SOURCE.c.id)).scalar_one()
            ledger_store.append(conn, [EntryDraft(  # the rows as verification re-derives them
                actor=principal.id, action=vocab.VAULT_SOURCE_REGISTERED,
                resource=vocab.dataset(dataset),
                details={"dataset": dataset, "dataset_id": ds, "source": int(src),
                         "dataset_row": manifest.dataset_row(conn, ds),
                         "source_row": manifest.source_row(conn, int(src))})])
        # the dataset's keys exist before its people are resolved under the person key
        BatchKeys.active(conn, Keyring(provider_for(home)), ds)
    return IngestPlan(source_id=int(src), source_hash=digest, dataset=dataset, path=str(path),
                      rows=info.rows, batch_rows=batch_rows, batches=batches,
                      already_ingested=done >= batches and src is not None and done > 0,
                      columns=_columns_report(classes), encoding=info.encoding,
                      batch_starts=info.batch_starts, label=label)


def _stored_of(conn: Connection, source_id: int) -> tuple[int, int]:
    """How many of a source's batches are stored, and their rows (a resumed ingest)."""
    row = conn.execute(select(func.count(T_BATCH.c.batch_index.distinct()),
                              func.coalesce(func.sum(T_BATCH.c.rows), 0))
                       .where(T_BATCH.c.source_id == source_id)).one()
    return int(row[0]), int(row[1])


def _plan_batches(plan: IngestPlan, start_index: int = 0, limits: ReaderLimits | None = None,
                  columns: list[str] | None = None) -> Iterator[tuple[int, pl.DataFrame]]:
    """(index, frame) of the plan's batches from ``start_index`` on, read streaming; each
    frame must have the planned columns (a file changed since planning is refused), and
    is cut to ``columns`` when given."""
    if start_index >= plan.batches:
        return
    names = [c["name"] for c in plan.columns]
    label = plan.label
    frames = iter_batches(plan.path, plan.batch_rows, limits=limits or limits_from_env(),
                          encoding=plan.encoding, label=label, start=plan.start_of(start_index))
    index = start_index
    for index, frame in enumerate(frames, start=start_index):
        if frame.columns != names or index >= plan.batches:
            raise BadInput(f"{label}: batch {index} does not match the planned file "
                           "(changed since it was planned?)")
        yield index, (frame if columns is None else frame.select(columns))
        index += 1
    if index < plan.batches:
        raise BadInput(f"{label}: fewer rows than planned (changed since it was planned?)")


def resolve_people(engine: Engine, home: VaultHome, plan: IngestPlan,
                   classes: list[ColumnClass], declared: tuple[str, ...],
                   limits: ReaderLimits | None = None) -> tuple[PersonDigests, dict[str, Any]]:
    """Every row's person pseudonym, resolved across the whole source (not one batch) in
    one streaming pass over its identifier columns; only keyed digests are kept
    (``vault.identity.DigestResolver``: on disk, nothing per row in memory), never the
    identifiers; the result is read from an unnamed temporary file batch by batch."""
    identity = plan_identity(classes, declared)
    wanted = sorted({c for _, cols in identity.levels for c in cols})
    with engine.begin() as conn:  # created by plan_ingest; read here
        key = Keyring(provider_for(home)).active(conn, dataset_id(conn, plan.dataset),
                                                 "person").key
    with DigestResolver(key, identity, plan.rows) as resolver:
        if wanted:
            for _, frame in _plan_batches(plan, 0, limits, columns=wanted):
                resolver.add(frame)
                del frame
        else:  # no identifier: each row a person of its own, the file need not be read
            for at in range(0, plan.rows, plan.batch_rows):
                resolver.add(pl.DataFrame(), rows=min(plan.batch_rows, plan.rows - at))
        people, report = resolver.resolve()
    return people, {**report.to_json(), "order": identity.to_json()}


def ingest_batch(engine: Engine, home: VaultHome, principal: _access.Principal,
                 plan: IngestPlan, batch_index: int, *, frame: pl.DataFrame | None = None,
                 keyring: Keyring | None = None,
                 cache: IdentityCache | None = None) -> dict[str, int]:
    """Store batch ``batch_index`` of the plan's source (idempotent); reads only that
    batch's rows (from its planned byte offset) unless ``frame`` (the batch) is given.
    The person keys come from one streaming pass over the source's identifier columns
    (a person is resolved across the whole file, not one batch), so each call reads
    those columns of the whole file: for many batches use ``store_source`` or
    ``vault.ingest_parallel.store_source_on``, which resolve people once."""
    if frame is not None:
        part = frame
    else:
        _, part = next(_plan_batches(plan, batch_index))
    classes = plan.classes()
    declared, per_person, _ = identity_for(home, plan.dataset)
    layout, originals = layout_for(classes, declared, per_person)
    people, _ = resolve_people(engine, home, plan, classes, declared)
    prepared = prepare_batch(part, classes, originals,
                             people.batch(batch_index * plan.batch_rows, plan.batch_rows),
                             declared)
    kr = keyring or Keyring(provider_for(home))
    try:
        with _access.access(engine, home, principal, "ingest",
                            vocab.dataset(plan.dataset)) as conn:
            ds = dataset_id(conn, plan.dataset)
            res = write_batch(conn, kr, ds_id=ds, dataset=plan.dataset,
                              source_id=plan.source_id, batch_index=batch_index,
                              frame=prepared, layout=layout, actor=principal.id, cache=cache)
    except BaseException:
        if cache is not None:  # what it learnt was rolled back with the transaction
            cache.clear()
        raise
    return {"batch_id": res.batch_id or 0, "added": res.added, "updated": res.updated,
            "skipped": res.skipped, "suppressed": res.suppressed,
            "already_stored": int(res.already_stored)}


def store_source(engine: Engine, home: VaultHome, principal: _access.Principal,
                 plan: IngestPlan, *, progress: Progress | None = None,
                 limits: ReaderLimits | None = None) -> IngestReport:
    """Store every batch of a planned source in this process, pipelined (idempotent),
    reading the file batch by batch (memory bounded by ``limits.chunk_bytes`` and the
    batch size, not by the file).

    Batches already stored (a resumed run) are recognised and add nothing; reading
    resumes at the first batch not stored. The report's ``batches`` counts the
    batches stored by this call.
    """
    job = StoreJob.start(engine, home, plan, limits)
    first = job.first_missing()
    rows = plan.batch_rows
    frames = ((i, prepare_batch(f, job.classes, job.originals, job.people.batch(i * rows, rows),
                                job.declared))
              for i, f in _plan_batches(plan, first, limits) if i not in job.stored_before)
    return job.write(engine, home, principal, frames, progress)


@dataclass
class StoreJob:
    """What storing a planned source needs besides its rows: column handling, the
    storage layout, every row's person pseudonym (resolved once, across the file) and
    the batches a previous run stored already. Digests and names only."""

    plan: IngestPlan
    classes: list[ColumnClass]
    declared: tuple[str, ...]
    layout: ColumnLayout
    originals: dict[str, str]
    people: PersonDigests
    identity: dict[str, Any]
    ds_id: int
    stored_before: set[int]

    @classmethod
    def start(cls, engine: Engine, home: VaultHome, plan: IngestPlan,
              limits: ReaderLimits | None = None) -> StoreJob:
        classes = plan.classes()
        declared, per_person, _ = identity_for(home, plan.dataset)
        layout, originals = layout_for(classes, declared, per_person)
        people, identity = resolve_people(engine, home, plan, classes, declared, limits)
        with engine.connect() as conn:
            ds = dataset_id(conn, plan.dataset)
            stored = {int(i) for i in conn.execute(
                select(T_BATCH.c.batch_index).where(T_BATCH.c.source_id == plan.source_id))
                .scalars()}
        return cls(plan, classes, declared, layout, originals, people, identity, ds, stored)

    def first_missing(self) -> int:
        return next(i for i in range(self.plan.batches + 1) if i not in self.stored_before)

    def missing(self) -> list[int]:
        return [i for i in range(self.plan.batches) if i not in self.stored_before]

    def write(self, engine: Engine, home: VaultHome, principal: _access.Principal,
              frames: Iterator[tuple[int, pl.DataFrame]],
              progress: Progress | None = None) -> IngestReport:
        """Seal and store prepared batches, given in batch order, with one writer:
        batch k+1 is sealed while batch k is written (``vault.store.write_batches``)."""
        plan = self.plan
        resource = vocab.dataset(plan.dataset)
        added = updated = skipped = suppressed = stored = 0
        results = write_batches(
            lambda: _access.access(engine, home, principal, "ingest", resource),
            Keyring(provider_for(home)), ds_id=self.ds_id, dataset=plan.dataset,
            source_id=plan.source_id, batches=frames, layout=self.layout,
            actor=principal.id, cache=IdentityCache())
        rows_done = min(plan.rows, self.first_missing() * plan.batch_rows)
        try:
            for r in results:
                added, updated, skipped = added + r.added, updated + r.updated, skipped + r.skipped
                suppressed += r.suppressed
                stored += 0 if r.already_stored else 1
                rows_done += r.rows_in
                if progress is not None:
                    progress(rows_done, plan.rows)
        finally:
            self.people.close()  # its temporary file: every batch has taken its part
        return IngestReport(plan.dataset, added, updated, skipped, stored, plan.columns,
                            erased_suppressed=suppressed, people=int(self.identity["people"]),
                            identity=self.identity)


def ingest_path(engine: Engine, home: VaultHome, principal: _access.Principal, path: Path,
                dataset: str, *, progress: Progress | None = None,
                batch_rows: int = BATCH_ROWS,
                limits: ReaderLimits | None = None,
                label: str = DEFAULT_LABEL) -> IngestReport:
    """A file in this process: checked, hashed and sampled in one streaming pass,
    classified once, then stored batch by batch in a second streaming pass. Errors name
    the file as ``label`` (:func:`source_label`)."""
    if not path.is_file():
        raise BadInput("the file given to ingest does not exist")  # never its path
    limits = limits or limits_from_env()
    plan = plan_ingest(engine, home, principal, path, dataset, batch_rows=batch_rows,
                       limits=limits, label=label)
    if plan.already_ingested:
        return IngestReport(dataset, 0, 0, plan.rows, 0, plan.columns, already_ingested=True)
    return store_source(engine, home, principal, plan, progress=progress, limits=limits)
