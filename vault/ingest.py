"""Ingest: read a file, classify its columns once, prepare each batch per policy, store it.

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from sqlalchemy import Engine, select

from ledger import store as ledger_store
from ledger.entry import EntryDraft
from vault import access as _access
from vault import manifest
from vault.errors import BadInput
from vault.home import VaultHome
from vault.keyring import Keyring, now
from vault.keys import provider_for
from vault.pii.classifier import ColumnClass, apply_policy, classify_frame
from vault.store import (
    T_BATCH,
    T_DATASET,
    T_SOURCE,
    ColumnLayout,
    IdentityCache,
    StoredColumn,
    dataset_id,
    write_batch,
    write_batches,
)

BATCH_ROWS = 100_000
PARALLEL_TEXTS = 2_000  # from this many distinct texts, redaction uses every core
Progress = Callable[[int, int], None]

# Lookup entities and how their values are normalised for blind indexes, in the
# order that decides which one identifies a subject.
LOOKUP_NORMALIZERS: dict[str, str] = {
    "VOTER_ID": "id", "US_SSN": "id", "US_DRIVER_LICENSE": "id",
    "EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "PERSON": "text",
}


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def file_digest(path: Path) -> str:
    h = hashlib.sha256(b"civicvault/source/v1")
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_source(path: Path) -> pl.DataFrame:
    from vault.pii.readers import read_table

    frame: pl.DataFrame = read_table(path)
    return frame


def layout_for(classes: list[ColumnClass]) -> tuple[ColumnLayout, dict[str, str]]:
    """Storage layout from column classes; also returns original-column -> sealed name."""
    stored: list[StoredColumn] = []
    originals: dict[str, str] = {}
    lookup_entities: list[tuple[int, str]] = []
    priority = list(LOOKUP_NORMALIZERS)
    for c in classes:
        if c.handling == "drop":
            continue
        lookup = LOOKUP_NORMALIZERS.get(c.entity) if c.lookup_key else None
        if c.category == "direct" or c.handling == "tokenize":
            stored.append(StoredColumn(c.name, "direct", lookup))  # type: ignore[arg-type]
            if lookup is not None:
                lookup_entities.append((priority.index(c.entity), c.name))
        elif c.handling in ("generalize", "redact"):
            # the original, sealed per subject; the generalised/redacted form for releases
            sealed_name = f"{c.name}__original"
            originals[c.name] = sealed_name
            stored.append(StoredColumn(sealed_name, "direct"))
            stored.append(StoredColumn(c.name, "attribute"))
        else:
            stored.append(StoredColumn(c.name, "attribute"))
    identity = min(lookup_entities)[1] if lookup_entities else None
    return ColumnLayout(columns=tuple(stored), identity=identity), originals


def prepare_batch(frame: pl.DataFrame, classes: list[ColumnClass],
                  originals: dict[str, str]) -> pl.DataFrame:
    """Apply each column's handling, vectorised; free text is redacted in batches."""
    from vault.pii.freetext import redact_texts
    from vault.pii.generalize import generalize_frame

    general = generalize_frame(frame, classes)
    out: dict[str, pl.Series] = {}
    for c in classes:
        if c.handling == "drop":
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
             "lookup_key": bool(c.lookup_key)} for c in classes]


def plan_ingest(engine: Engine, home: VaultHome, principal: _access.Principal, path: Path,
                dataset: str, *, batch_rows: int = BATCH_ROWS,
                frame: pl.DataFrame | None = None) -> IngestPlan:
    """Register the source (by content hash) and the dataset; classify once."""
    if not path.is_file():
        raise BadInput(f"no such file: {path}")
    if not dataset or len(dataset) > 128 or not dataset.replace("-", "").replace("_", "") \
            .replace(".", "").isalnum():
        raise BadInput("dataset names are 1-128 letters, digits, '-', '_' or '.'")
    digest = file_digest(path)
    df = frame if frame is not None else read_source(path)
    if df.height == 0:
        raise BadInput(f"{path.name} has a header but no rows")
    classes = classify_for(home, df)
    layout, _ = layout_for(classes)
    batches = max(1, -(-df.height // batch_rows))
    with _access.access(engine, home, principal, "ingest", f"dataset/{dataset}") as conn:
        ds_row = conn.execute(select(T_DATASET.c.id, T_DATASET.c.columns_json)
                              .where(T_DATASET.c.name == dataset)).first()
        if ds_row is not None:
            known = ColumnLayout.from_json(ds_row.columns_json)
            if sorted(c.name for c in known.columns) != sorted(c.name for c in layout.columns):
                raise BadInput(f"{path.name} does not have the columns of dataset '{dataset}'")
        ds = dataset_id(conn, dataset, create_with=(
            hashlib.sha256(",".join(df.columns).encode()).hexdigest(),
            layout.to_json(classes=_columns_report(classes))))
        src = conn.execute(select(T_SOURCE.c.id).where(T_SOURCE.c.dataset_id == ds,
                                                       T_SOURCE.c.content_hash == digest)).scalar()
        if src is None:
            src = conn.execute(T_SOURCE.insert().values(
                dataset_id=ds, content_hash=digest, rows=df.height, batches=batches,
                created=now()).returning(T_SOURCE.c.id)).scalar_one()
            done = 0
            ledger_store.append(conn, [EntryDraft(  # the rows as verification re-derives them
                actor=principal.id, action="vault.source.registered",
                resource=f"dataset/{dataset}",
                details={"dataset": dataset, "dataset_id": ds, "source": int(src),
                         "dataset_row": manifest.dataset_row(conn, ds),
                         "source_row": manifest.source_row(conn, int(src))})])
        else:
            done = len(conn.execute(select(T_BATCH.c.batch_index).distinct()
                                    .where(T_BATCH.c.source_id == src)).all())
    return IngestPlan(source_id=int(src), source_hash=digest, dataset=dataset, path=str(path),
                      rows=df.height, batch_rows=batch_rows, batches=batches,
                      already_ingested=done >= batches and src is not None and done > 0,
                      columns=_columns_report(classes))


def ingest_batch(engine: Engine, home: VaultHome, principal: _access.Principal,
                 plan: IngestPlan, batch_index: int, *, frame: pl.DataFrame | None = None,
                 keyring: Keyring | None = None,
                 cache: IdentityCache | None = None) -> dict[str, int]:
    """Store batch ``batch_index`` of the plan's source (idempotent)."""
    df = frame if frame is not None else read_source(Path(plan.path))
    part = df.slice(batch_index * plan.batch_rows, plan.batch_rows)
    classes = classify_for(home, df)
    layout, originals = layout_for(classes)
    prepared = prepare_batch(part, classes, originals)
    kr = keyring or Keyring(provider_for(home))
    try:
        with _access.access(engine, home, principal, "ingest",
                            f"dataset/{plan.dataset}") as conn:
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
                 plan: IngestPlan, *, frame: pl.DataFrame | None = None,
                 progress: Progress | None = None) -> IngestReport:
    """Store every batch of a planned source in this process, pipelined (idempotent).

    Batches already stored (a resumed run) are recognised and add nothing; the
    report's ``batches`` counts the batches stored by this call.
    """
    df = frame if frame is not None else read_source(Path(plan.path))
    classes = classify_for(home, df)
    layout, originals = layout_for(classes)
    with engine.connect() as conn:
        ds = dataset_id(conn, plan.dataset)
    resource = f"dataset/{plan.dataset}"
    rows = plan.batch_rows
    frames = ((i, prepare_batch(df.slice(i * rows, rows), classes, originals))
              for i in range(plan.batches))
    added = updated = skipped = suppressed = stored = 0
    results = write_batches(lambda: _access.access(engine, home, principal, "ingest", resource),
                            Keyring(provider_for(home)), ds_id=ds, dataset=plan.dataset,
                            source_id=plan.source_id, batches=frames, layout=layout,
                            actor=principal.id, cache=IdentityCache())
    for done, r in enumerate(results, start=1):
        added, updated, skipped = added + r.added, updated + r.updated, skipped + r.skipped
        suppressed += r.suppressed
        stored += 0 if r.already_stored else 1
        if progress is not None:
            progress(done, plan.batches)
    return IngestReport(plan.dataset, added, updated, skipped, stored, plan.columns,
                        erased_suppressed=suppressed)


def ingest_path(engine: Engine, home: VaultHome, principal: _access.Principal, path: Path,
                dataset: str, *, progress: Progress | None = None,
                batch_rows: int = BATCH_ROWS) -> IngestReport:
    """Whole file in this process: read once, classify once, store batch by batch."""
    if not path.is_file():
        raise BadInput(f"no such file: {path}")
    df = read_source(path)
    plan = plan_ingest(engine, home, principal, path, dataset, batch_rows=batch_rows, frame=df)
    if plan.already_ingested:
        return IngestReport(dataset, 0, 0, plan.rows, 0, plan.columns, already_ingested=True)
    return store_source(engine, home, principal, plan, frame=df, progress=progress)
