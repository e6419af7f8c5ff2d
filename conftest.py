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


# Fixtures through which a test reaches the database, a broker or a server process: only such tests can
# behave differently on PostgreSQL + Redis than on the embedded default.
_BACKEND_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback", "live_server"}
)
_BACKEND_MARKERS = ("django_db", "postgres", "redis", "e2e", "browser", "faults")


def _reaches_a_backend(item) -> bool:
    if any(item.get_closest_marker(name) for name in _BACKEND_MARKERS):
        return True
    return bool(_BACKEND_FIXTURES.intersection(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(config, items):
    """With NEOPAIN_BACKEND_TESTS_ONLY=1 (CI's second pass, on PostgreSQL + Redis), leave out tests that touch
    neither the database nor Redis nor a server: they ran moments before on the embedded default and would
    only repeat the same computation (model training, image decoding) on the same machine."""
    import os

    if os.environ.get("NEOPAIN_BACKEND_TESTS_ONLY") != "1":
        return
    kept, left_out = [], []
    for item in items:
        (kept if _reaches_a_backend(item) else left_out).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept
