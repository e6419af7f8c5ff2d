from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TriageConfig(AppConfig):
    name = "triage"
    verbose_name = "Triage"

    def ready(self):
        from triage.dbroles import grant_after_migrate

        post_migrate.connect(grant_after_migrate, sender=self, dispatch_uid="triage_app_role_grant")
