"""Hot-path statements compiled once per dialect and run on the DBAPI cursor.

Going through `Connection.execute` costs 50–100 µs of Python per statement (cache key,
execution context, result wrapping): more than SQLite takes to run most of ours, and the
processing of one mail runs about fifteen. A `Prepared` statement stays a Core construct (one
source of truth, every dialect), is compiled once per dialect, and runs on the DBAPI cursor of
the session's connection, inside the session's transaction, with the statement's own type
processors (`type.dialect_impl(dialect).bind_processor/result_processor`, what SQLAlchemy
applies itself), so values are written and read exactly as through SQLAlchemy. DBAPI errors
are raised as SQLAlchemy's (`DBAPIError.instance`), so `db.transaction` still tells a locked
database (retry) from a broken one.

Not for statements with expanding parameters (`IN` lists), nor for statements built per call
(optional filters): their SQL depends on the values. Those are `Dynamic`, which offers the
same methods and runs on the connection's `execute` (SQLAlchemy compiles them, and caches the
compiled form by the statement's shape). Every statement of the store is one or the other:
the store has one way to run SQL, and the ORM's unit of work is not used (the models are
table definitions).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ClauseElement, Executable

Processor = Callable[[Any], Any]
Params = Mapping[str, Any]
NO_PARAMS: Params = {}


_GIVEN = object()  # a parameter the caller passes (not a constant of the statement)


@dataclass
class _Compiled:
    sql: str
    names: tuple[str, ...] | None  # positional order (qmark); None: named parameters
    # bind name → (type processor, the statement's constant value or _GIVEN)
    binds: dict[str, tuple[Processor | None, Any]]
    row: Any  # a namedtuple class for returned rows, or None
    types: tuple[Any, ...]  # each returned column's dialect type
    # Result processors may depend on the driver's type code of a column (PostgreSQL's
    # numerics), so they are made at the first execution, from the cursor's description.
    results: tuple[Processor | None, ...] | None = None


class Prepared:
    def __init__(self, stmt: ClauseElement) -> None:
        self.stmt = stmt
        self._compiled: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def rows(self, s: Session, params: Params = NO_PARAMS) -> list[Any]:
        """Every returned row (a namedtuple: `row.id`, `row[0]`)."""
        c, cursor = self._run(s, params)
        return [_row(c, r, cursor, s) for r in cursor.fetchall()]

    def first(self, s: Session, params: Params = NO_PARAMS) -> Any | None:
        c, cursor = self._run(s, params)
        r = cursor.fetchone()
        return None if r is None else _row(c, r, cursor, s)

    def scalar(self, s: Session, params: Params = NO_PARAMS) -> Any:
        row = self.first(s, params)
        return None if row is None else row[0]

    def scalars(self, s: Session, params: Params = NO_PARAMS) -> list[Any]:
        """The first column of every returned row."""
        return [r[0] for r in self.rows(s, params)]

    def run(self, s: Session, params: Params = NO_PARAMS) -> int:
        """Execute; the number of rows the statement changed."""
        _, cursor = self._run(s, params)
        return int(cursor.rowcount)

    def run_many(self, s: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        """One statement for several parameter sets (inserts without RETURNING)."""
        if rows:
            self._execute(s, rows)

    def _run(self, s: Session, params: Mapping[str, Any]) -> tuple[_Compiled, Any]:
        return self._execute(s, [params])

    def _execute(self, s: Session, rows: Sequence[Mapping[str, Any]]) -> tuple[_Compiled, Any]:
        conn = s.connection()
        dialect = conn.dialect
        c = self._for(dialect, rows[0])
        values = [_bind(c, r) for r in rows]
        cursor = _cursor(s, conn.connection)
        try:
            if len(values) > 1:  # psycopg's executemany costs 1.6× an execute for one row
                cursor.executemany(c.sql, values)
            else:
                cursor.execute(c.sql, values[0])
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(c.sql, values if len(values) > 1 else values[0], exc,
                                      dialect.loaded_dbapi.Error, dialect=dialect) from exc
        return c, cursor

    def _for(self, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
        key = (dialect.name, tuple(params))
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = self._compile(dialect, list(params))
        return found

    def _compile(self, dialect: Dialect, keys: list[str]) -> _Compiled:
        compiled: Any = self.stmt.compile(dialect=dialect, column_keys=keys)
        if "POSTCOMPILE" in compiled.string:
            raise TypeError("Prepared cannot run statements with expanding parameters")
        # Columns left out whose Python-side default SQLAlchemy computes at execution: their
        # binds look like constants (None), so they must be refused here, not written NULL.
        prefetch = [*compiled.insert_prefetch, *compiled.update_prefetch]
        if prefetch:
            raise TypeError(f"Prepared needs a value for {', '.join(c.key for c in prefetch)}"
                            " (a column default SQLAlchemy would compute at execution)")
        binds: dict[str, tuple[Processor | None, Any]] = {}
        for name, bp in compiled.binds.items():
            proc = bp.type.dialect_impl(dialect).bind_processor(dialect)
            if name in keys:
                binds[name] = (proc, _GIVEN)
            elif not bp.required and bp.callable is None:  # `x == 'pending'`, `n + 1`
                binds[name] = (proc, bp.effective_value)
            else:
                raise TypeError(f"Prepared needs a value for {name!r}")
        columns = list(getattr(self.stmt, "exported_columns", ()))
        return _Compiled(
            sql=compiled.string,
            names=tuple(compiled.positiontup) if compiled.positiontup else None,
            binds=binds,
            # an unlabelled expression (count(…)) has no key: such a field is `_0`, `_1` …
            row=namedtuple("Row", [str(col.key) for col in columns], rename=True)
            if columns else None,
            types=tuple(col.type.dialect_impl(dialect) for col in columns))


def _cursor(s: Session, fairy: Any) -> Any:
    """A DBAPI cursor for the session's connection, made once per session (a transaction,
    here): a cursor per statement cost psycopg ~6 µs and SQLAlchemy's wrapper more. Every
    caller reads its result before the next statement. Kept with the session, not the
    pooled connection, so nothing outlives the session that could keep a connection open."""
    dbapi = fairy.dbapi_connection
    cached = s.info.get(_CURSOR)
    if cached is None or cached[0] is not dbapi:
        cached = s.info[_CURSOR] = (dbapi, dbapi.cursor())
    return cached[1]


_CURSOR = "maild.prepared.cursor"


def _bind(c: _Compiled, params: Mapping[str, Any]) -> Any:
    values = {}
    for name, (proc, constant) in c.binds.items():
        v = params[name] if constant is _GIVEN else constant
        values[name] = v if proc is None else proc(v)  # processors take None too
    return [values[n] for n in c.names] if c.names is not None else values


def _row(c: _Compiled, raw: Sequence[Any], cursor: Any, s: Session) -> Any:
    if c.results is None:
        dialect = s.connection().dialect
        c.results = tuple(t.result_processor(dialect, d[1])
                          for t, d in zip(c.types, cursor.description, strict=True))
    return c.row._make(v if p is None else p(v) for p, v in zip(c.results, raw, strict=True))



class Dynamic:
    """A statement whose SQL depends on the call: optional filters, expanding `IN` lists.
    The methods of `Prepared` (rows, first, scalar, scalars, run, run_many), run on the
    session's connection (Core: no ORM unit of work, no autoflush). Rows are SQLAlchemy's
    `Row`s, which read like `Prepared`'s (`row.id`, `row[0]`, `row._asdict()`)."""

    __slots__ = ("stmt",)

    def __init__(self, stmt: Executable) -> None:
        self.stmt = stmt

    def _result(self, s: Session, params: Params) -> CursorResult[Any]:
        return s.connection().execute(self.stmt, params)

    def rows(self, s: Session, params: Params = NO_PARAMS) -> list[Any]:
        return list(self._result(s, params).all())

    def first(self, s: Session, params: Params = NO_PARAMS) -> Any | None:
        return self._result(s, params).first()

    def scalar(self, s: Session, params: Params = NO_PARAMS) -> Any:
        return self._result(s, params).scalar()

    def scalars(self, s: Session, params: Params = NO_PARAMS) -> list[Any]:
        return list(self._result(s, params).scalars())

    def run(self, s: Session, params: Params = NO_PARAMS) -> int:
        """Execute; the number of rows the statement changed."""
        return int(self._result(s, params).rowcount)

    def run_many(self, s: Session, rows: Sequence[Params]) -> None:
        if rows:
            s.connection().execute(self.stmt, list(rows))
