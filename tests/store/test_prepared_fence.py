"""A fence around the SQLAlchemy internals `store.prepared.Prepared` reads.

`Prepared` compiles a Core statement once and runs it on the DBAPI cursor, so it reads what
SQLAlchemy's compiler leaves on the compiled object (`binds`, `positiontup`, the marker of
expanding parameters, each bind's `required`, `callable` and `effective_value`) and the
types' bind and result processors. None of that is public API: a SQLAlchemy release may
change it. pyproject.toml pins SQLAlchemy to the range this was tested with; when the pin
moves, this test says which piece changed shape, before a store test fails obscurely.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from store.models import Outbox, Ticket
from store.prepared import Prepared

DIALECTS = {"sqlite": sqlite.pysqlite.dialect(), "postgresql": postgresql.psycopg.dialect()}


def fence(ok: bool, what: str) -> None:
    if not ok:
        pytest.fail(f"SQLAlchemy {sqlalchemy.__version__} changed an internal that "
                    f"store/prepared.py relies on: {what}. Adapt Prepared (or use the "
                    "connection's execute) before moving the SQLAlchemy pin in pyproject.toml.",
                    pytrace=False)


def compiled(stmt: Any, dialect: Dialect, keys: list[str] | None = None) -> Any:
    return stmt.compile(dialect=dialect, column_keys=keys)


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_compiled_statements_have_what_prepared_reads(name: str) -> None:
    dialect = DIALECTS[name]
    stmt = select(Outbox.id, Outbox.created_at).where(
        Outbox.to_addr == bindparam("to"), Outbox.state == "pending")
    c = compiled(stmt, dialect, ["to"])
    fence(isinstance(getattr(c, "string", None), str), "Compiled.string is not the SQL text")
    binds = getattr(c, "binds", None)
    fence(isinstance(binds, dict), "Compiled.binds is not a dict of bind name → BindParameter")
    assert isinstance(binds, dict)
    fence("to" in binds, f"Compiled.binds does not name the parameter 'to' ({list(binds)})")
    for attr in ("type", "required", "callable", "effective_value"):
        fence(all(hasattr(b, attr) for b in binds.values()), f"BindParameter.{attr} is gone")
    constants = {n for n, b in binds.items()
                 if n != "to" and not b.required and b.callable is None
                 and b.effective_value == "pending"}
    fence(bool(constants), "a statement's constant ('pending') is not a bind that is not "
          f"required, has no callable and gives it as effective_value ({list(binds)})")
    fence(bool(binds["to"].required), "a bindparam without a value is not `required`")
    # positional dialects (SQLite's qmark) name their parameters in order; others do not
    order = getattr(c, "positiontup", "missing")
    fence(order != "missing", "Compiled.positiontup is gone")
    if dialect.positional:
        fence(len(order) == 2 and order[0] == "to" and order[1] in constants,
              f"Compiled.positiontup is not the parameters' order ({order!r})")
    else:
        fence(not order, f"a named paramstyle has a positiontup ({order!r})")
    # the rows' fields and types come from the statement's exported columns
    fence([col.key for col in stmt.exported_columns] == ["id", "created_at"],
          "Select.exported_columns do not carry the columns' keys")


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_insert_takes_its_columns_from_column_keys(name: str) -> None:
    """`Prepared` compiles an insert for the keys of the first parameter set it is given."""
    c = compiled(insert(Ticket).returning(Ticket.id), DIALECTS[name], ["title", "status"])
    fence({"title", "status"} <= set(c.binds) and "priority" not in c.binds,
          f"compile(column_keys=…) does not make an insert of those columns ({list(c.binds)})")
    # Columns left out that have a Python-side default are computed at execution: their
    # binds look like constants (None), so Prepared refuses them by `insert_prefetch`.
    prefetch = getattr(c, "insert_prefetch", None)
    fence(prefetch is not None and getattr(c, "update_prefetch", None) is not None,
          "Compiled.insert_prefetch / update_prefetch are gone")
    fence({col.key for col in prefetch} == {"description", "blocked", "sla_disabled", "custom"},
          "Compiled.insert_prefetch is not the left-out columns with Python-side defaults "
          f"({prefetch!r})")
    with pytest.raises(TypeError, match="needs a value for description"):
        Prepared(insert(Ticket))._compile(DIALECTS[name], ["title", "status"])
    u = compiled(update(Ticket).where(Ticket.id == bindparam("tid"))
                 .values(status=bindparam("st")), DIALECTS[name], ["tid", "st"])
    fence({"tid", "st"} <= set(u.binds), f"an update's binds are not its names ({list(u.binds)})")


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_expanding_parameters_are_marked_in_the_sql(name: str) -> None:
    stmt = select(Outbox.id).where(Outbox.id.in_(bindparam("ids", expanding=True)))
    fence("POSTCOMPILE" in compiled(stmt, DIALECTS[name]).string,
          "an expanding IN parameter is no longer marked POSTCOMPILE in the compiled SQL")


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_types_give_bind_and_result_processors(name: str) -> None:
    dialect = DIALECTS[name]
    for col in (Outbox.created_at, Outbox.context, Outbox.automatic, Outbox.id):
        impl = col.type.dialect_impl(dialect)
        bind = impl.bind_processor(dialect)
        fence(bind is None or callable(bind), f"{col.key}: bind_processor(dialect)")
        result = impl.result_processor(dialect, None)
        fence(result is None or callable(result),
              f"{col.key}: result_processor(dialect, coltype)")
    # the aware-UTC type decorator: Prepared writes what SQLAlchemy would
    proc = Outbox.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    fence(proc is not None, "the UTCDateTime decorator has no bind processor")


def test_dbapi_errors_are_wrapped_as_sqlalchemy_does() -> None:
    import sqlite3

    err = DBAPIError.instance("SELECT 1", (), sqlite3.OperationalError("locked"),
                              sqlite3.Error, dialect=DIALECTS["sqlite"])
    fence(isinstance(err, sqlalchemy.exc.OperationalError),
          "DBAPIError.instance no longer maps a DBAPI OperationalError to SQLAlchemy's")


def test_prepared_compiles_a_statement_once_per_dialect_and_keys() -> None:
    """What the fence protects, end to end without a database: the compiled form."""
    p = Prepared(select(Outbox.id).where(Outbox.message_id == bindparam("mid"),
                                         Outbox.state == "pending"))
    for dialect in DIALECTS.values():
        c = p._for(dialect, {"mid": "<x@y>"})
        assert p._for(dialect, {"mid": "<z@y>"}) is c
        assert set(c.binds) == {"mid", *(n for n in c.binds if n != "mid")}
        assert c.row is not None and c.row._fields == ("id",)
