"""The /fhir/ endpoints (FHIR R4 JSON). Every error is an OperationOutcome (:mod:`.common`)."""

from ehr.apis.bulk import ExportFileApi, ExportKickOffApi, ExportStatusApi
from ehr.apis.common import FhirApi, FhirError, FhirJsonRenderer
from ehr.apis.reads import (
    CodeSystemApi,
    DeviceReadApi,
    FlagReadApi,
    MetadataApi,
    ObservationReadApi,
    ObservationSearchApi,
    PatientReadApi,
    PractitionerReadApi,
    UnknownApi,
)

__all__ = [
    "CodeSystemApi",
    "DeviceReadApi",
    "ExportFileApi",
    "ExportKickOffApi",
    "ExportStatusApi",
    "FlagReadApi",
    "FhirApi",
    "FhirError",
    "FhirJsonRenderer",
    "MetadataApi",
    "ObservationReadApi",
    "ObservationSearchApi",
    "PatientReadApi",
    "PractitionerReadApi",
    "UnknownApi",
]
