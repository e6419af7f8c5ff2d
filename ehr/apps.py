from django.apps import AppConfig


class EhrConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ehr"
    verbose_name = "EHR (FHIR R4)"

    def ready(self) -> None:
        from ehr import signals

        signals.connect()
