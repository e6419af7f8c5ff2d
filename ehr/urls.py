"""/fhir/ routes (mounted by neopain_site.urls). Resource ids: ``nips-<pk>``, ``ai-<pk>``, numbers."""

from django.urls import path, re_path

from ehr import apis

urlpatterns = [
    path("metadata", apis.MetadataApi.as_view(), name="fhir-metadata"),
    path("CodeSystem/<str:pk>", apis.CodeSystemApi.as_view(), name="fhir-codesystem"),
    path("Observation", apis.ObservationSearchApi.as_view(), name="fhir-observation-search"),
    path("Observation/<str:pk>", apis.ObservationReadApi.as_view(), name="fhir-observation-read"),
    path("Patient/<str:pk>", apis.PatientReadApi.as_view(), name="fhir-patient-read"),
    path("Practitioner/<str:pk>", apis.PractitionerReadApi.as_view(), name="fhir-practitioner-read"),
    path("Device/<str:pk>", apis.DeviceReadApi.as_view(), name="fhir-device-read"),
    path("Flag/<str:pk>", apis.FlagReadApi.as_view(), name="fhir-flag-read"),
    path("$export", apis.ExportKickOffApi.as_view(), name="fhir-export"),
    path("$export-status/<str:pk>", apis.ExportStatusApi.as_view(), name="fhir-export-status"),
    path("$export-file/<str:pk>/<str:name>", apis.ExportFileApi.as_view(), name="fhir-export-file"),
    re_path(r"^(?P<rest>.*)$", apis.UnknownApi.as_view(), name="fhir-unknown"),
]
