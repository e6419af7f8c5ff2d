"""Push hooks: a decided case and a new alert put their FHIR resources in the outbox, in the same
transaction as the decision (``post_save`` runs inside it), so a decision is never committed without
its outbox row. Only when ``NEOPAIN_FHIR_ENDPOINT`` is set (``ehr.services.outbox.push_enabled``)."""

from __future__ import annotations

from django.conf import settings
from django.db.models.signals import post_save

from ehr import services
from triage.models import Alert, TriageCase


def _case_saved(sender, instance: TriageCase, created: bool, update_fields=None, **kwargs) -> None:
    if not settings.NEOPAIN_FHIR_ENDPOINT or instance.status != TriageCase.Status.DECIDED:
        return
    if update_fields is not None and "status" not in update_fields:
        return
    services.outbox_queue_case(case=instance)


def _alert_saved(sender, instance: Alert, created: bool, **kwargs) -> None:
    if created and settings.NEOPAIN_FHIR_ENDPOINT:
        services.outbox_queue_alert(alert=instance)


def connect() -> None:
    post_save.connect(_case_saved, sender=TriageCase, dispatch_uid="ehr_outbox_case")
    post_save.connect(_alert_saved, sender=Alert, dispatch_uid="ehr_outbox_alert")
