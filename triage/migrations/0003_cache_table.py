"""Create the database cache table (login throttling, audit de-duplication) with `migrate`.

The embedded default uses Django's database cache; without this, a fresh `make run` would fail
every sign-in. With Redis configured (REDIS_URL) createcachetable has nothing to do.
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("triage", "0002_audit_append_only_and_roles")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]
