"""Column-wise bulk inserts: the whole batch in one statement, no per-row Python.

A :class:`Columns` value holds one table's new rows column by column: integer
columns as NumPy arrays, blob columns as lists of ``bytes``, and constants.

- PostgreSQL: one ``COPY ... FROM STDIN (FORMAT csv)`` fed a single buffer that
  Polars formats (bytea as ``\\x`` hex), instead of ``write_row`` per row.
- SQLite has no COPY. Each blob column travels as *one* bound blob (the values
  concatenated) and the integers, offsets and lengths as one JSON array of
  arrays; a single ``INSERT ... SELECT ... FROM json_each(?)`` unpacks them inside
  SQLite. Binding is O(columns), not O(rows x columns), and the statement runs in
  one ``sqlite3_step`` with the GIL released, so Python work can overlap it.

Both write exactly the rows ``executemany`` would (tests compare the two).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import polars as pl
from sqlalchemy import Connection, Table

IntArray = np.ndarray[Any, np.dtype[np.int64]]


@dataclass
class Columns:
    """New rows of one table, column by column (every column has ``n`` values)."""

    n: int
    ints: dict[str, IntArray] = field(default_factory=dict)
    blobs: dict[str, list[bytes]] = field(default_factory=dict)
    consts: dict[str, int | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, a in self.ints.items():
            if len(a) != self.n:
                raise ValueError(f"column {name}: {len(a)} values for {self.n} rows")
        for name, b in self.blobs.items():
            if len(b) != self.n:
                raise ValueError(f"column {name}: {len(b)} values for {self.n} rows")

    @property
    def names(self) -> list[str]:
        return [*self.ints, *self.blobs, *self.consts]

    def take(self, order: IntArray) -> Columns:
        """The same rows in another order (e.g. sorted by the table's key)."""
        idx = order.tolist()
        return Columns(self.n, {k: v[order] for k, v in self.ints.items()},
                       {k: [v[i] for i in idx] for k, v in self.blobs.items()},
                       dict(self.consts))


def insert_columns(conn: Connection, table: Table, rows: Columns) -> None:
    """Insert ``rows`` into ``table`` in one statement (COPY on PostgreSQL)."""
    if rows.n == 0:
        return
    for c in rows.names:
        if c not in table.c:
            raise ValueError(f"{table.name} has no column {c}")
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql":
        _copy_pg(raw, table, rows)
    else:
        _insert_sqlite(raw, table, rows)


def _copy_pg(raw: Any, table: Table, rows: Columns) -> None:
    data: dict[str, pl.Series] = {k: pl.Series(k, v, dtype=pl.Int64) for k, v in rows.ints.items()}
    for k, v in rows.blobs.items():
        data[k] = ("\\x" + pl.Series(k, v, dtype=pl.Binary).bin.encode("hex")).alias(k)
    for k, c in rows.consts.items():
        data[k] = pl.Series(k, [c]).extend_constant(c, rows.n - 1)
    buf = io.BytesIO()
    pl.DataFrame(list(data.values())).write_csv(buf, include_header=False)
    names = ", ".join(f'"{c}"' for c in data)
    sql = f"COPY {table.name} ({names}) FROM STDIN (FORMAT csv)"
    with raw.cursor() as cur, cur.copy(sql) as cp:
        cp.write(buf.getbuffer())


def _insert_sqlite(raw: Any, table: Table, rows: Columns) -> None:
    n_int = len(rows.ints)
    parts: list[IntArray] = list(rows.ints.values())
    params: list[Any] = [None]
    exprs: list[str] = [f"value->>{i}" for i in range(n_int)]
    for j, vals in enumerate(rows.blobs.values()):
        lengths = np.fromiter(map(len, vals), dtype=np.int64, count=rows.n)
        offsets = np.zeros(rows.n, dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        parts += [offsets + 1, lengths]  # substr() counts from 1
        params.append(b"".join(vals) + b"\0")  # never empty: sqlite3 binds b"" as NULL
        o = n_int + 2 * j
        exprs.append(f"substr(?{len(params)}, value->>{o}, value->>{o + 1})")
    for c in rows.consts.values():
        params.append(c)
        exprs.append(f"?{len(params)}")
    if parts:
        params[0] = orjson.dumps(np.stack(parts, axis=1), option=orjson.OPT_SERIALIZE_NUMPY)
    else:
        params[0] = b"[" + b",".join([b"0"] * rows.n) + b"]"
    names = ", ".join(f'"{c}"' for c in rows.names)
    sql = f"INSERT INTO {table.name} ({names}) SELECT {', '.join(exprs)} FROM json_each(?1)"
    params[0] = params[0].decode()  # json_each reads text
    raw.cursor().execute(sql, params)
