"""Append-only audit log enforced in the database, and one auth Group per role."""

from django.db import migrations

PG_SQL = """
CREATE OR REPLACE FUNCTION neopain_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS triage_auditevent_append_only ON triage_auditevent;
CREATE TRIGGER triage_auditevent_append_only
    BEFORE UPDATE OR DELETE ON triage_auditevent
    FOR EACH ROW EXECUTE FUNCTION neopain_audit_append_only();
DROP TRIGGER IF EXISTS triage_auditevent_no_truncate ON triage_auditevent;
CREATE TRIGGER triage_auditevent_no_truncate
    BEFORE TRUNCATE ON triage_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION neopain_audit_append_only();
"""
PG_REVERSE = """
DROP TRIGGER IF EXISTS triage_auditevent_append_only ON triage_auditevent;
DROP TRIGGER IF EXISTS triage_auditevent_no_truncate ON triage_auditevent;
DROP FUNCTION IF EXISTS neopain_audit_append_only();
"""
SQLITE_SQL = [
    """CREATE TRIGGER IF NOT EXISTS triage_auditevent_no_update BEFORE UPDATE ON triage_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only (UPDATE refused)'); END;""",
    """CREATE TRIGGER IF NOT EXISTS triage_auditevent_no_delete BEFORE DELETE ON triage_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only (DELETE refused)'); END;""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS triage_auditevent_no_update;",
    "DROP TRIGGER IF EXISTS triage_auditevent_no_delete;",
]

ROLE_PERMISSIONS = {
    "nurse": ["view_neonate", "view_frame", "view_prediction", "view_triagecase", "change_triagecase", "view_alert",
              "change_alert", "add_nipsassessment", "view_nipsassessment", "add_faceboxcorrection"],
    "unit_admin": ["view_neonate", "add_neonate", "change_neonate", "view_frame", "view_prediction", "view_triagecase",
                   "view_alert", "change_alert", "view_nipsassessment", "view_unitsettings", "change_unitsettings",
                   "view_auditevent", "view_modelversion", "change_modelversion", "view_device", "add_device",
                   "change_device", "view_user", "add_user", "change_user"],
    "ml_engineer": ["view_modelversion", "add_modelversion", "change_modelversion", "view_prediction",
                    "view_nipsassessment", "view_auditevent"],
    "device": ["add_frame", "add_clip"],
}


def install_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_SQL, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_SQL:
            schema_editor.execute(statement)


def remove_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_REVERSE, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_REVERSE:
            schema_editor.execute(statement)


def create_role_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(Permission.objects.filter(codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("triage", "0001_initial"),
        ("annotations", "0002_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(install_triggers, remove_triggers),
        migrations.RunPython(create_role_groups, migrations.RunPython.noop),
    ]
