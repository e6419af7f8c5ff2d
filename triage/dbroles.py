"""PostgreSQL privileges of the application's own database login (issue 16, item 3).

Two roles: an *owner* that runs migrations and owns every table (and the audit triggers), and an
*app* role that web, workers and beat connect as. The app role may read and write the app's tables
but on ``triage_auditevent`` only SELECT and INSERT; it owns nothing, so it can neither
``ALTER TABLE ... DISABLE TRIGGER`` nor ``DROP TRIGGER``, and UPDATE, DELETE and TRUNCATE of audit
rows are refused by privilege before the append-only trigger is even reached.

``migrate`` (run as the owner) re-applies the grants after every run when ``NEOPAIN_DB_APP_ROLE``
names the app role, so tables added by later migrations are covered.
"""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

AUDIT_TABLE = "triage_auditevent"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _quoted(role: str) -> str:
    if not _ROLE_NAME.match(role):
        raise ValueError(f"not a plain PostgreSQL role name: {role!r} (lower-case letters, digits, _)")
    return f'"{role}"'


def app_role_grant(*, connection, role: str) -> None:
    """Grant ``role`` what the app needs in the current database's ``public`` schema, and no more.

    Run as the owner of the tables (or a superuser). A no-op on anything but PostgreSQL.
    """
    if connection.vendor != "postgresql":
        return
    name = _quoted(role)
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {name}",
        f"REVOKE CREATE ON SCHEMA public FROM {name}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {name}",
        # Audit rows: read and append, nothing else.
        f"REVOKE ALL ON {AUDIT_TABLE} FROM {name}",
        f"GRANT SELECT, INSERT ON {AUDIT_TABLE} TO {name}",
        # The migration history belongs to the owner; the app only reads it (e.g. `migrate --check`).
        f"REVOKE ALL ON django_migrations FROM {name}",
        f"GRANT SELECT ON django_migrations TO {name}",
    ]
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    logger.info("granted the app role %s its privileges (audit table: SELECT, INSERT only)", role)


def grant_after_migrate(sender, using="default", **kwargs) -> None:
    """``post_migrate`` hook: keep the app role's grants in step with the schema."""
    from django.conf import settings
    from django.db import connections

    role = getattr(settings, "NEOPAIN_DB_APP_ROLE", "")
    if role:
        app_role_grant(connection=connections[using], role=role)
