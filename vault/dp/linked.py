"""DP releases across two linked datasets, and a link's match quality, person-level.

``run_linked_release``: ``--dataset nc_voters --join nc_history`` joins the live rows of
both datasets inside the vault through the link (``vault.linkage``) and releases
noisy aggregates. The privacy unit is the person of the *left* dataset (a voter):

* ``count``: linked rows (voter x history row) after the filters; OpenDP keeps at most
  ``k = rows_per_person`` of the link's rows per person (``[links.NAME]``);
* ``people``: distinct persons with a linked row per group (``k = 1`` when every
  group-by column is on the left side, else the link's k);
* ``turnout``: the share of the left persons having at least one linked row that
  passes the filters (a mean of a 0/1 per person, ``k = 1``);
* ``sum:COL`` / ``mean:COL``: over linked rows, COL of either side with policy bounds.

The bound k and the unit are in the accuracy metadata (``privacy_unit``) and on the
ledger. The release charges its (epsilon, delta) on *both* datasets, in one
transaction, before any data is read (two ``release.charge`` entries). A person
erased on either side is not in the join (erasure cuts the link).

``run_link_report``: DP counts of the right dataset's records by match status
(matched, unmatched, ambiguous) and one public segment column; never a list.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import polars as pl
from sqlalchemy import Connection, Engine, select

from ledger import store as ledger_store
from ledger.entry import EntryDraft
from policies.errors import PolicyDenied
from policies.model import LinkRule
from policies.validate import fingerprint
from vault import budget, linkage, vocab
from vault.access import Principal
from vault.dp.plan import Unit, build_plan, prepared_schema
from vault.dp.release import (
    CHARGE_ACTION,
    Charged,
    ReleaseResult,
    after_charge,
    charge_budget,
    guarded_access,
    ledger_denials,
    load_policy,
    record_release,
    resource_of,
    rows_of,
)
from vault.dp.request import (
    Bounds,
    CheckedRequest,
    Measure,
    ReleasePolicy,
    ReleaseRequest,
    check_bounds,
    check_delta,
    check_epsilon,
)
from vault.dp.source import PERSON, private_workdir
from vault.errors import BadInput
from vault.home import VaultHome
from vault.keyring import Keyring

LINKED_KINDS = ("count", "people", "turnout")
MATCH_STATUS = ("matched", "unmatched", "ambiguous")
TURNOUT = "turnout"
MATCH = "match"


@dataclass(frozen=True)
class LinkedRequest:
    left: str
    right: str
    by: tuple[str, ...]
    measures: tuple[str, ...]
    epsilon: Fraction
    delta: float | None = None
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()  # right-side filters: column, values

    def shape(self, known: frozenset[str] = frozenset()) -> dict[str, Any]:
        """For the ledger: names the policy knows (``known``: its datasets and columns),
        fingerprints of anything else the caller typed (it could be PII)."""

        def name(text: str) -> str:
            return text if text in known else fingerprint(text)

        def measure(spec: str) -> str:
            kind, sep, col = spec.partition(":")
            if not sep:
                return spec if spec in LINKED_KINDS else fingerprint(spec)
            return f"{name(kind)}:{name(col)}"

        return {
            "join": name(self.right), "by": [name(c) for c in self.by],
            "measures": [measure(m) for m in self.measures],
            "where": [{"column": name(c), "values": [fingerprint(v) for v in vals]}
                      for c, vals in self.where],
            "epsilon": budget.format_epsilon(self.epsilon),
            **({"delta": repr(self.delta)} if self.delta is not None else {}),
        }


def known_names(policy: Any) -> frozenset[str]:
    """Dataset and column names the policy declares (safe to put on the ledger)."""
    names: set[str] = {"sum", "mean"}
    for rule in dict(policy.links).values():
        for ds in (rule.left, rule.right):
            names.add(ds)
            try:
                cols = dict(policy.columns_for(ds))
            except KeyError:
                cols = {}
            names.update(cols)
            names.update(f"{ds}.{c}" for c in cols)
    return frozenset(names)


@dataclass(frozen=True)
class _Col:
    label: str  # the name in the released table
    side: str  # "left" | "right"
    column: str  # the stored column


@dataclass(frozen=True)
class LinkedPlan:
    rule: LinkRule
    kind: str  # rows | people | turnout
    by: tuple[_Col, ...]
    measures: tuple[_Col, ...]
    checked: CheckedRequest
    unit: Unit


def _rules(policy: ReleasePolicy, dataset: str) -> dict[str, Any]:
    try:
        return dict(policy.columns_for(dataset))
    except KeyError:
        return {}


def _resolve(text: str, left: str, right: str, rules: dict[str, dict[str, Any]],
             what: str) -> _Col:
    """``COL`` (left first, then right) or ``DATASET.COL``; BadInput never echoes ``text``."""
    prefix, dot, rest = text.partition(".")
    if dot and prefix in (left, right) and rest:
        side = "left" if prefix == left else "right"
        if rest in rules[side]:
            return _Col(text, side, rest)
    for side in ("left", "right"):
        if text in rules[side]:
            return _Col(text, side, text)
    raise BadInput(f"a {what} is not a column the policy allows on either dataset "
                   "(see 'civicvault policy show')")


def plan_linked(request: LinkedRequest, policy: ReleasePolicy,
                links: dict[str, LinkRule]) -> LinkedPlan:
    """Validate ``request`` against the policy (no data): the columns, the measures, the
    bound k, and the CheckedRequest that ``vault.dp.plan`` builds the measurement from."""
    check_epsilon(request.epsilon)
    caps = [policy.delta_per_release(request.left), policy.delta_per_release(request.right)]
    check_delta(request.delta, min(caps))
    rule = linkage.find_rule(links, request.left, request.right)
    if rule is None:
        raise PolicyDenied("the policy declares no link between these two datasets "
                           "([links] in the policy; --dataset is its left side)")
    if not request.measures:
        raise BadInput("give at least one --measure")
    rules = {"left": _rules(policy, request.left), "right": _rules(policy, request.right)}
    if not rules["left"] or not rules["right"]:
        raise PolicyDenied("the policy allows no releases from one of these datasets")
    by = tuple(_resolve(c, request.left, request.right, rules, "group-by column")
               for c in request.by)
    if len({c.label for c in by}) != len(by):
        raise BadInput("a group-by column is repeated")
    keys: dict[str, tuple[str, ...] | None] = {}
    for c in by:
        rule_c = rules[c.side][c.column]
        if not rule_c.groupable:
            raise PolicyDenied("a group-by column may not be used to group releases")
        keys[c.label] = tuple(rule_c.keys) if rule_c.keys is not None else None
    kinds: set[str] = set()
    measures: list[Measure] = []
    measure_cols: list[_Col] = []
    bounds: dict[str, Bounds] = {}
    for spec in request.measures:
        spec = spec.strip()
        if spec in ("count", "people"):
            kinds.add("rows" if spec == "count" else "people")
            measures.append(Measure("count"))
            continue
        if spec == TURNOUT:
            kinds.add(TURNOUT)
            measures.append(Measure("mean", TURNOUT))
            bounds[TURNOUT] = Bounds(0.0, 1.0)
            continue
        kind, sep, col = spec.partition(":")
        if not sep or kind not in ("sum", "mean") or not col:
            raise BadInput("bad measure: use count, people, turnout, sum:COLUMN or mean:COLUMN")
        c = _resolve(col, request.left, request.right, rules, "measure column")
        rule_c = rules[c.side][c.column]
        bounds[c.label] = check_bounds(c.label, rule_c.lower, rule_c.upper)
        kinds.add("rows")
        measures.append(Measure("sum" if kind == "sum" else "mean", c.label))
        measure_cols.append(c)
    if len(kinds) != 1:
        raise BadInput("count/sum/mean (linked rows), people and turnout count different "
                       "things: ask for them in separate releases")
    if len({m.label for m in measures}) != len(measures):
        raise BadInput("a measure is repeated")
    kind = kinds.pop()
    on_left = all(c.side == "left" for c in by)
    if kind == TURNOUT and not on_left:
        raise BadInput("turnout is a share of the left dataset's people: group it by "
                       "columns of the left dataset only")
    for col, _values in request.where:
        if col not in rules["right"]:
            raise BadInput("a --where column is not a column the policy allows on the "
                           "joined dataset")
    k = 1 if kind == TURNOUT or (kind == "people" and on_left) else rule.rows_per_person
    unit = Unit(rows_per_person=k, max_people=int(policy.privacy_unit(request.left).max_people))
    if None in keys.values() and request.delta is None:
        raise BadInput("a group-by column has no public key set in the policy: releasing "
                       "its groups needs --delta (OpenDP's DP key release)")
    req = ReleaseRequest(dataset=request.left, by=tuple(c.label for c in by),
                         measures=tuple(measures), epsilon=request.epsilon, delta=request.delta)
    checked = CheckedRequest(request=req, keys=keys, bounds=bounds)
    return LinkedPlan(rule, kind, by, tuple(measure_cols), checked, unit)


def _charge(conn: Connection, policy: Any, principal: Principal, datasets: Sequence[str],
            epsilon: Fraction, delta: float | None, details: dict[str, Any], op: str,
            purpose: str | None) -> tuple[Charged, list[int]]:
    """Spend on every dataset read, in the caller's transaction: all or nothing."""
    charges = [charge_budget(conn, principal, ds, epsilon, policy,
                             delta=budget.delta_fraction(delta)) for ds in datasets]
    entries = ledger_store.append(conn, [EntryDraft(
        actor=principal.id, action=CHARGE_ACTION, resource=resource_of(ds), purpose=purpose,
        details={**details, "op": op, "datasets": list(datasets), **c.ledger_details()})
        for ds, c in zip(datasets, charges, strict=True)])
    seqs = [int(e.seq) for e in entries]
    return Charged(charges[0], seqs[0], True), seqs


def _authorise_other(conn: Connection, home: VaultHome, principal: Principal, action: str,
                     dataset: str, purpose: str | None) -> None:
    """The second dataset's decision, ledgered in the same transaction (denied: raised)."""
    from vault.access import installed_policy

    decision = installed_policy(home).decide(principal.role, action, resource_of(dataset),
                                             purpose, actor=principal.id)
    if not decision.allowed:
        raise PolicyDenied(f"denied: {principal.id} ({principal.role}) {action} on "
                           f"{resource_of(dataset)}: {decision.reason}")
    ledger_store.append(conn, [EntryDraft(
        actor=principal.id, action=vocab.POLICY_ALLOWED, resource=resource_of(dataset),
        purpose=purpose, details={"op": action, "role": principal.role})])


def _exist(engine: Engine, names: Sequence[str]) -> None:
    with engine.connect() as conn:
        found = linkage.dataset_ids(conn, names)
    if len(found) != len(set(names)):
        raise BadInput("a dataset of the request is not in the vault")


def _linked_rows(conn: Connection, link_id: int) -> pl.DataFrame:
    """One row per live right subject linked to exactly one left subject: ``left`` (its
    left subject), ``batch``, ``row`` (where its current row is stored). The join on
    the link digest runs in the database; only integers come back, as columns."""

    from vault.store import T_SUBJECT

    owners = linkage._owners(link_id)
    right_id, blind_col = linkage.right_keying(conn, link_id)
    if blind_col is not None and conn.dialect.name == "sqlite":
        return _linked_rows_sqlite(conn, link_id, right_id, blind_col)
    src, (subject, digest, where) = linkage.right_members(link_id, right_id, blind_col)
    with linkage.bulk_joins(conn):
        return linkage.read_frame(conn, select(owners.c.l, T_SUBJECT.c.current_batch_id,
                                               T_SUBJECT.c.current_row)
                                  .select_from(src.join(owners, owners.c.digest == digest)
                                               .join(T_SUBJECT, T_SUBJECT.c.id == subject))
                                  .where(where, owners.c.n == 1,
                                         T_SUBJECT.c.erased_at.is_(None)),
                                  {"left": pl.Int64, "batch": pl.Int64, "row": pl.Int64})


def _blind_owners_sqlite(conn: Connection, link_id: int, right_id: int,
                         blind_col: str) -> tuple[Any, Any]:
    """SQLite, a right side kept by blind digest: (right subject ids, their left owner),
    two NumPy arrays, for the ids whose key has exactly one left owner. The right blind
    index in its own (digest, subject) order twice: its subject ids, and each digest's
    count with its left owner (key row, then the left members' digest index: one lookup
    per id), so the ids split into runs of one owner. SQLite joins by nested lookups
    only: joining the 10M index rows to anything row by row read it at random; these
    are sequential reads, each one text (``group_concat``) parsed by NumPy."""
    import numpy as np
    from sqlalchemy import text

    args = {"ds": right_id, "col": blind_col}
    ids_text: str | None = conn.execute(text(
        "SELECT group_concat(subject_id) FROM (SELECT subject_id FROM vault_blind_index "
        "WHERE dataset_id = :ds AND \"column\" = :col ORDER BY digest, subject_id)"),
        args).scalar()
    # per digest of the index, in the same order: its left owner (-1: none, or
    # several) and its number of subjects; one key lookup per id, in key order, and
    # one owner lookup per id in the members' digest index
    runs_text: str | None = conn.execute(text(
        "SELECT group_concat(ifnull((SELECT CASE WHEN count(*) = 1 THEN "
        "min(m.subject_id) END FROM vault_link_members m WHERE m.link_id = :link "
        "AND m.side = 0 AND m.digest = k.digest), -1) || ',' || g.n, char(10)) "
        "FROM (SELECT digest, count(*) n FROM vault_blind_index WHERE dataset_id = :ds "
        "AND \"column\" = :col GROUP BY digest ORDER BY digest) g "
        "LEFT JOIN vault_link_keys k ON k.link_id = :link AND k.blind = g.digest"),
        {**args, "link": link_id}).scalar()
    if not ids_text or not runs_text:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    ids = np.fromstring(ids_text, dtype=np.int64, sep=",")
    del ids_text
    runs = np.fromstring(runs_text.replace("\n", ","), dtype=np.int64, sep=",")
    del runs_text
    lefts = np.repeat(runs[0::2], runs[1::2])
    if lefts.shape[0] != ids.shape[0]:
        raise RuntimeError("the blind index changed between two reads of one snapshot")
    keep = lefts >= 0
    return ids[keep], lefts[keep]


def _linked_rows_sqlite(conn: Connection, link_id: int, right_id: int,
                        blind_col: str) -> pl.DataFrame:
    """:func:`_linked_rows` on SQLite for a right side kept by blind digest (batches
    stored before migration 0011, without a row -> subject column): the owners of
    :func:`_blind_owners_sqlite` and, on a second connection in a second thread (SQLite
    releases the GIL while it steps: the two reads use both cores), the right dataset's
    live subjects' (batch, row) in id order (a range scan of the table, not of its
    dataset index), gathered by a dense id index in NumPy.

    (Each connection reads its own snapshot: a subject erased between them is in at most
    one and drops out of the join.)"""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from sqlalchemy import text

    def live_rows() -> str | None:  # on its own connection, on the other core
        with conn.engine.connect().execution_options(readonly=True) as other:
            lo, hi = other.execute(text("SELECT min(id), max(id) FROM vault_subjects "
                                        "WHERE dataset_id = :ds"), {"ds": right_id}).one()
            found: str | None = other.execute(text(
                "SELECT group_concat(id || ',' || current_batch_id || ',' || current_row, "
                "char(10)) FROM vault_subjects NOT INDEXED WHERE id BETWEEN :lo AND :hi "
                "AND dataset_id = :ds AND erased_at IS NULL"),
                {"lo": lo, "hi": hi, "ds": right_id}).scalar()
            return found

    schema = {"left": pl.Int64, "batch": pl.Int64, "row": pl.Int64}
    pool = ThreadPoolExecutor(1)
    pending = pool.submit(live_rows)
    try:
        ids, lefts = _blind_owners_sqlite(conn, link_id, right_id, blind_col)
        subjects = pending.result()
    finally:
        pool.shutdown(wait=True)
    if not ids.shape[0] or not subjects:
        return pl.DataFrame(schema=schema)
    where = pl.read_csv(subjects.encode(), has_header=False,
                        new_columns=["subject", "batch", "row"],
                        schema={"subject": pl.Int64, "batch": pl.Int64, "row": pl.Int64},
                        quote_char=None)
    del subjects
    owners = _Owners(where.get_column("subject").to_numpy(),
                     np.arange(where.height, dtype=np.int64))
    pos = owners.of(ids)  # each linked id's position among the live subjects (-1: none)
    found = pos >= 0
    # live subjects only (an erased one has no (batch, row) here)
    return pl.DataFrame({
        "left": lefts[found],
        "batch": where.get_column("batch").to_numpy()[pos[found]],
        "row": where.get_column("row").to_numpy()[pos[found]]}, schema=schema)


class _Owners:
    """A map of int64 keys (right subject ids) to int64 values (their left owner), as
    arrays: dense (indexed by id) when the ids are one dataset's range, else sorted."""

    def __init__(self, keys: Any, values: Any) -> None:
        import numpy as np

        keys = np.asarray(keys, dtype=np.int64)
        values = np.asarray(values, dtype=np.int64)
        self.lo = int(keys.min()) if keys.shape[0] else 0
        span = int(keys.max()) - self.lo + 1 if keys.shape[0] else 0
        self.dense = span <= 4 * keys.shape[0] + 1024
        if self.dense:
            self.slot = np.full(span, -1, dtype=np.int64)
            self.slot[keys - self.lo] = values
        else:
            order = np.argsort(keys, kind="stable")
            self.keys, self.values = keys[order], values[order]

    def of(self, wanted: Any) -> Any:
        """The value of each of ``wanted`` (-1: not a key)."""
        import numpy as np

        wanted = np.asarray(wanted, dtype=np.int64)
        out = np.full(wanted.shape[0], -1, dtype=np.int64)
        if self.dense:
            inside = (wanted >= self.lo) & (wanted < self.lo + self.slot.shape[0])
            out[inside] = self.slot[wanted[inside] - self.lo]
            return out
        if not self.keys.shape[0]:
            return out
        pos = np.searchsorted(self.keys, wanted)
        pos[pos >= self.keys.shape[0]] = 0
        hit = self.keys[pos] == wanted
        out[hit] = self.values[pos[hit]]
        return out


def _subject_owners(engine: Engine, link_id: int) -> _Owners:
    """Each linked right subject's left owner (its key has exactly one live left owner),
    on a connection of its own (the caller runs it in a second thread while it decrypts:
    SQLite and psycopg release the GIL while the database works). Integers only. An
    erased right subject has no blind-index or member row left, so it is not here."""
    with engine.connect().execution_options(readonly=True) as conn, conn.begin():
        right_id, blind_col = linkage.right_keying(conn, link_id)
        if blind_col is not None and conn.dialect.name == "sqlite":
            return _Owners(*_blind_owners_sqlite(conn, link_id, right_id, blind_col))
        owners = linkage._owners(link_id)
        src, (subject, digest, where) = linkage.right_members(link_id, right_id, blind_col)
        with linkage.bulk_joins(conn):
            got = linkage.read_frame(conn, select(subject, owners.c.l)
                                     .select_from(src.join(owners, owners.c.digest == digest))
                                     .where(where, owners.c.n == 1),
                                     {"right": pl.Int64, "left": pl.Int64})
    return _Owners(got.get_column("right").to_numpy(), got.get_column("left").to_numpy())


def _right_side(conn: Connection, keyring: Keyring, plan: LinkedPlan, request: LinkedRequest,
                ds_id: int, link_id: int) -> pl.DataFrame:
    """The linked right rows that pass the ``--where`` filters: ``subject`` (the left
    subject) + the asked-for right columns. One batch at a time: a batch's columns are
    decrypted, filtered and joined with that batch's linked rows before the next batch
    is opened, so the decrypted history is never held whole; for turnout only the
    distinct left subjects of a batch are kept."""
    linked = _linked_rows(conn, link_id)
    cols = [c for c in plan.by + plan.measures if c.side == "right"]
    need = list(dict.fromkeys([c for c, _ in request.where] + [c.column for c in cols]))
    if not need:
        return linked.select(pl.col("left").alias("subject"))
    by_batch = linked.partition_by("batch", as_dict=True, include_key=False)
    del linked
    parts: list[pl.DataFrame] = []
    for batch, frame in linkage.batch_columns(conn, keyring, ds_id,
                                              sorted(int(k[0]) for k in by_batch), need):
        for col, vals in request.where:
            frame = frame.filter(pl.col(col).str.strip_chars()
                                 .is_in([v.strip() for v in vals]))
        rows = by_batch.pop((batch,))
        part = rows.join(frame.select("row", *[pl.col(c.column).alias(c.label) for c in cols]),
                         on="row").select(pl.col("left").alias("subject"),
                                          *[c.label for c in cols])
        if plan.kind == TURNOUT:
            part = part.select("subject").unique()
        parts.append(part)
        del frame, rows
    if not parts:
        return pl.DataFrame(schema={"subject": pl.Int64, **{c.label: pl.String for c in cols}})
    return pl.concat(parts)


def _right_by_rows(conn: Connection, keyring: Keyring, plan: LinkedPlan,
                   request: LinkedRequest, ds_id: int, batches: Sequence[Any],
                   owners: Future[_Owners]) -> pl.DataFrame:
    """:func:`_right_side` for a right dataset whose batches all have a row -> subject
    column (migration 0011): each batch's asked-for columns are decrypted, filtered
    (``--where``) and cut to its live rows, the subject of each row read from the batch's
    own column (no ``vault_subjects`` read); the rows left keep their right subject id
    only. Then (``owners``: :func:`_subject_owners`, read meanwhile in a second thread)
    each right subject becomes its left subject; unlinked rows drop out."""
    cols = [c for c in plan.by + plan.measures if c.side == "right"]
    need = list(dict.fromkeys([c for c, _ in request.where] + [c.column for c in cols]))
    parts: list[pl.DataFrame] = []
    for frame in linkage.live_row_values(conn, keyring, ds_id, need, batches):
        for col, vals in request.where:
            frame = frame.filter(pl.col(col).str.strip_chars()
                                 .is_in([v.strip() for v in vals]))
        parts.append(frame.select("subject", *[pl.col(c.column).alias(c.label) for c in cols]))
        del frame
    schema = {"subject": pl.Int64, **{c.label: pl.String for c in cols}}
    right = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    del parts
    lefts = owners.result().of(right.get_column("subject").to_numpy())
    right = right.with_columns(pl.Series("subject", lefts, dtype=pl.Int64)).filter(
        pl.col("subject") >= 0)
    return right.select("subject").unique() if plan.kind == TURNOUT else right


def _left_values(conn: Connection, keyring: Keyring, ds_id: int,
                 stored: Sequence[str]) -> pl.DataFrame:
    """``subject`` + the decrypted ``stored`` columns of the left dataset's live subjects:
    from each batch's row -> subject column and live mask when every batch has one
    (migration 0011), else through ``vault_subjects``."""
    batches = linkage.row_subject_batches(conn, ds_id)
    if batches is None:
        return linkage.attribute_values(conn, keyring, ds_id, stored,
                                        linkage.live_subjects(conn, ds_id))
    frames = list(linkage.live_row_values(conn, keyring, ds_id, stored, batches))
    if not frames:
        return pl.DataFrame(schema={"subject": pl.Int64, **{c: pl.String for c in stored}})
    return pl.concat(frames, how="vertical_relaxed")


def _joined(conn: Connection, keyring: Keyring, plan: LinkedPlan, request: LinkedRequest,
            link_id: int) -> pl.DataFrame:
    """The private frame OpenDP sees: one row per linked row / person, ``__person`` first.

    Columnar end to end: only the asked-for columns are decrypted (one AES-GCM call per
    batch and column), the right side's filters apply batch by batch before its rows
    meet the left side, and the link maps right subjects to left ones as integer
    arrays. When the right dataset's batches carry their row -> subject column
    (migration 0011) the link's owners are read in a second thread (its own
    connection) while this one decrypts both sides; else (older batches) the linked
    rows' (batch, row) come from the database first (:func:`_right_side`)."""
    from concurrent.futures import ThreadPoolExecutor

    ids = linkage.dataset_ids(conn, [request.left, request.right])
    right_batches = linkage.row_subject_batches(conn, ids[request.right])
    pool = ThreadPoolExecutor(1) if right_batches is not None else None
    try:
        pending = (pool.submit(_subject_owners, conn.engine, link_id)
                   if pool is not None else None)
        left_attrs = linkage._layout(conn, ids[request.left]).attributes
        left_cols = [c for c in plan.by + plan.measures if c.side == "left"]
        person_in_left = PERSON in left_attrs
        stored = list(dict.fromkeys([c.column for c in left_cols]
                                    + ([PERSON] if person_in_left else [])))
        got = _left_values(conn, keyring, ids[request.left], stored)
        left = got.select("subject", *[pl.col(c.column).alias(c.label) for c in left_cols],
                          *([PERSON] if person_in_left else []))
        del got
        if not person_in_left:  # one person per subject
            left = left.with_columns(pl.col("subject").cast(pl.String).alias(PERSON))
        # right rows carry their left subject as ``subject``
        if right_batches is not None and pending is not None:
            right = _right_by_rows(conn, keyring, plan, request, ids[request.right],
                                   right_batches, pending)
        else:
            right = _right_side(conn, keyring, plan, request, ids[request.right], link_id)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    labels = [c.label for c in plan.by] + [c.label for c in plan.measures]
    if plan.kind == TURNOUT:
        linked = right.get_column("subject").unique()
        return left.select(PERSON, *[c.label for c in plan.by],
                           pl.col("subject").is_in(linked.implode()).cast(pl.Int64)
                           .alias(TURNOUT))
    out = right.join(left, on="subject", suffix="__left").select(PERSON, *labels)
    if plan.kind == "people":
        out = out.unique(subset=[PERSON, *[c.label for c in plan.by]])
    return out


def _write(frame: pl.DataFrame, path: Any) -> pl.LazyFrame:
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        frame.write_parquet(fh, compression="uncompressed", statistics=False)
    return pl.scan_parquet(path)


def _keyring(home: VaultHome) -> Keyring:
    from vault.keys import provider_for

    return Keyring(provider_for(home))


def run_linked_release(engine: Engine, home: VaultHome, principal: Principal,
                       request: LinkedRequest, *, policy: Any = None,
                       purpose: str | None = None) -> ReleaseResult:
    """Charge both datasets, then join through the link and release (see module doc)."""
    policy = policy if policy is not None else load_policy(home)
    details = {"linked": True, **request.shape(known_names(policy))}
    with ledger_denials(engine, principal, request.left, "release", details):
        _exist(engine, [request.left, request.right])
        plan = plan_linked(request, policy, dict(policy.links))
    with private_workdir() as tmp:
        with ledger_denials(engine, principal, request.left, "release", details):
            od = build_plan(plan.checked, prepared_schema(plan.checked), plan.unit, tmp)
        details = {**details, "link": plan.rule.name, "rows_per_person": plan.unit.rows_per_person}
        with guarded_access(engine, home, principal, "release", request.left, details,
                            purpose=purpose) as conn:
            _authorise_other(conn, home, principal, "release", request.right, purpose)
            link_id = linkage.current_link(conn, plan.rule)
            charged, seqs = _charge(conn, policy, principal, [request.left, request.right],
                                    request.epsilon, request.delta, details, "release", purpose)

        def work() -> tuple[ReleaseResult, int | None]:
            with engine.connect() as conn, conn.begin():
                frame = _joined(conn, _keyring(home), plan, request, link_id)
            lf = _write(frame, tmp / "joined.parquet")
            del frame
            out = od.run(lf)
            result = ReleaseResult(
                dataset=request.left, epsilon=request.epsilon, delta=request.delta,
                request=plan.checked.request, rows=rows_of(od, out), accuracy=od.accuracy,
                budget=charged.charge.budget,
                extra={"join": request.right, "link": plan.rule.name, "linked_measure": plan.kind,
                       "where": [{"column": c, "values": [fingerprint(v) for v in vals]}
                                 for c, vals in request.where],
                       "charged_datasets": [request.left, request.right]})
            with engine.begin() as conn:
                return result, record_release(conn, principal, result, charged,
                                              {**details, "charge_seqs": seqs},
                                              purpose=purpose)

        result, seq = after_charge(engine, principal, request.left, "release", charged, work)
    return replace(result, ledger_seq=seq)


def run_link_report(engine: Engine, home: VaultHome, principal: Principal, link: str,
                    by: str | None, epsilon: Fraction, *, policy: Any = None,
                    purpose: str | None = None) -> ReleaseResult:
    """DP counts of the right dataset's records by match status (and a public segment
    column of the right dataset); unit: the right dataset's person, its rows_per_person."""
    policy = policy if policy is not None else load_policy(home)
    rule = policy.links.get(link)
    details: dict[str, Any] = {"link": link if rule is not None else fingerprint(link),
                               "by": [by if by in known_names(policy) else fingerprint(by)]
                               if by else [], "epsilon":
                               budget.format_epsilon(epsilon)}
    dataset = rule.right if rule is not None else "unknown"
    with ledger_denials(engine, principal, dataset, linkage.LINK_REPORT_PERMISSION, details):
        if rule is None:
            raise BadInput("no such link in the policy (see 'civicvault policy show')")
        check_epsilon(epsilon)
        _exist(engine, [rule.left, rule.right])
        keys: dict[str, tuple[str, ...] | None] = {MATCH: MATCH_STATUS}
        labels = [MATCH]
        if by:
            rules = _rules(policy, rule.right)
            col = rules.get(by)
            if col is None:
                raise BadInput("--by is not a column the policy allows on the linked dataset")
            if not col.groupable or col.keys is None:
                raise PolicyDenied("the --by column has no public key set in the policy")
            keys[by] = tuple(col.keys)
            labels = [by, MATCH]
        req = ReleaseRequest(dataset=rule.right, by=tuple(labels), measures=(Measure("count"),),
                             epsilon=epsilon)
        checked = CheckedRequest(request=req, keys=keys, bounds={})
        unit = Unit(rows_per_person=int(policy.privacy_unit(rule.right).rows_per_person),
                    max_people=int(policy.privacy_unit(rule.right).max_people))
    with private_workdir() as tmp:
        with ledger_denials(engine, principal, dataset, linkage.LINK_REPORT_PERMISSION,
                            details):
            od = build_plan(checked, prepared_schema(checked), unit, tmp)
        with guarded_access(engine, home, principal, linkage.LINK_REPORT_PERMISSION,
                            rule.right, details, purpose=purpose) as conn:
            link_id = linkage.current_link(conn, rule)
            charged, seqs = _charge(conn, policy, principal, [rule.left, rule.right], epsilon,
                                    None, details, linkage.LINK_REPORT_PERMISSION, purpose)

        def work() -> tuple[ReleaseResult, int | None]:
            with engine.connect() as conn, conn.begin():
                ids = linkage.dataset_ids(conn, [rule.right])
                ds = ids[rule.right]
                attrs = linkage._layout(conn, ds).attributes
                want = [c for c in ([by] if by else []) + [PERSON] if c in attrs]
                frame = linkage.attribute_values(conn, _keyring(home), ds, want,
                                                 linkage.live_subjects(conn, ds))
                _, status = linkage.link_pairs(conn, link_id)
            if PERSON not in frame.columns:
                frame = frame.with_columns(pl.col("subject").cast(pl.String).alias(PERSON))
            frame = (frame.join(status.select(pl.col("right").alias("subject"), "status"),
                                on="subject", how="left", maintain_order="left")
                     .with_columns(pl.col("status").fill_null("unmatched").alias(MATCH))
                     .select(PERSON, *labels))
            out = od.run(_write(frame, tmp / "report.parquet"))
            result = ReleaseResult(
                dataset=rule.right, epsilon=epsilon, delta=None, request=req,
                rows=rows_of(od, out), accuracy=od.accuracy, budget=charged.charge.budget,
                extra={"link": rule.name, "report": "match status of the records of "
                       f"'{rule.right}' against '{rule.left}'",
                       "charged_datasets": [rule.left, rule.right]})
            with engine.begin() as conn:
                [entry] = ledger_store.append(conn, [EntryDraft(
                    actor=principal.id, action=linkage.LINK_REPORT_ACTION,
                    resource=linkage.resource_of(rule.name), purpose=purpose,
                    data_hash=result.data_hash,
                    details={**details, "charge_seq": charged.seq, "charge_seqs": seqs,
                             "privacy_unit": "person",
                             "rows_per_person": unit.rows_per_person,
                             "groups": len(result.rows)})])
                return result, int(entry.seq)

        result, seq = after_charge(engine, principal, rule.right,
                                   linkage.LINK_REPORT_PERMISSION, charged, work)
    return replace(result, ledger_seq=seq)
