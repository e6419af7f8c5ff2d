"""Root pytest hooks shared by every test folder (tests/, triage/tests, annotations/tests).

The audit log is append-only in the database (triggers refuse UPDATE, DELETE and TRUNCATE).
Transactional tests (``django_db(transaction=True)``, ``live_server``) end with a ``flush``
that empties every table, which those triggers would refuse. Only for that test-database
flush, the triggers are suspended and put back; production keeps them always.
"""

from __future__ import annotations

import importlib

import pytest

_AUDIT_MIGRATION = "triage.migrations.0002_audit_append_only_and_roles"


def _suspend_audit_triggers(connection) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE triage_auditevent DISABLE TRIGGER USER")
        elif connection.vendor == "sqlite":
            for statement in importlib.import_module(_AUDIT_MIGRATION).SQLITE_REVERSE:
                cursor.execute(statement)


def _restore_audit_triggers(connection) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE triage_auditevent ENABLE TRIGGER USER")
        elif connection.vendor == "sqlite":
            for statement in importlib.import_module(_AUDIT_MIGRATION).SQLITE_SQL:
                cursor.execute(statement)


@pytest.fixture(scope="session", autouse=True)
def _test_flush_passes_audit_triggers():
    from django.db.backends.base.operations import BaseDatabaseOperations

    original = BaseDatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        _suspend_audit_triggers(self.connection)
        try:
            return original(self, sql_list)
        finally:
            _restore_audit_triggers(self.connection)

    BaseDatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    BaseDatabaseOperations.execute_sql_flush = original
