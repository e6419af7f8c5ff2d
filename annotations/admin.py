"""Nurse decisions are evidence: read-only in the admin (they are made, and audited, in the app)."""

from django.contrib import admin

from annotations.models import FaceBoxCorrection, NipsAssessment
from triage.admin import ReadOnlyAdmin


@admin.register(NipsAssessment)
class NipsAssessmentAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "case",
        "nurse",
        "total",
        "rule",
        "pain",
        "unable_to_assess",
        "is_second_opinion",
        "created_at",
    ]
    list_filter = ["pain", "unable_to_assess", "is_second_opinion"]
    search_fields = ["case__neonate__mrn", "nurse__username"]


@admin.register(FaceBoxCorrection)
class FaceBoxCorrectionAdmin(ReadOnlyAdmin):
    list_display = ["id", "frame", "nurse", "x", "y", "w", "h", "no_face", "created_at"]
