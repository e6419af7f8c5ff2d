"""Move DRF's clear-text tokens (``authtoken_token``) into hashed ``ApiToken`` rows, then drop that table.

Existing keys keep working (their first 12 characters are the lookup prefix, the row keeps only the
SHA-256 of the key) until they expire: a year from now for cameras, 12 hours for people. On a fresh
database ``rest_framework.authtoken`` was never installed and this does nothing.
"""

import hashlib
from datetime import timedelta

from django.db import migrations
from django.utils import timezone

LEGACY_TABLE = "authtoken_token"


def hash_legacy_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("triage", "ApiToken")
    User = apps.get_model("triage", "User")
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id FROM {LEGACY_TABLE}")
        rows = cursor.fetchall()
    roles = dict(User.objects.filter(pk__in=[user_id for _, user_id in rows]).values_list("pk", "role"))
    for key, user_id in rows:
        device = roles.get(user_id) == "device"
        ApiToken.objects.create(
            user_id=user_id,
            kind="device" if device else "person",
            prefix=key[:12],
            digest=hashlib.sha256(key.encode("utf-8")).hexdigest(),
            created_at=now,
            expires_at=now + (timedelta(days=365) if device else timedelta(hours=12)),
        )
    schema_editor.execute(f"DROP TABLE {LEGACY_TABLE}")
    # The app is gone from INSTALLED_APPS: forget its migrations so a later reinstall starts clean.
    schema_editor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


class Migration(migrations.Migration):
    dependencies = [("triage", "0013_h18c_api_tokens")]

    operations = [migrations.RunPython(hash_legacy_tokens, migrations.RunPython.noop)]
