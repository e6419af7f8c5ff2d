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
    re_path(r"^(?P<rest>.*)$", apis.UnknownApi.as_view(), name="fhir-unknown"),
]
