"""FHIR read and search: CapabilityStatement, Observation (read, search), Patient, Practitioner, Device."""

from __future__ import annotations

from urllib.parse import urlencode

from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from annotations.models import NipsAssessment
from ehr import resources, selectors
from ehr.apis.common import FhirApi, not_found
from ehr.apis.params import observation_query


def observation_resource(row) -> dict:
    return resources.nips_observation(row) if isinstance(row, NipsAssessment) else resources.ai_observation(row)


class MetadataApi(FhirApi):
    """``GET /fhir/metadata``: what this server supports. Open to all (it holds no patient data)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request):
        base = self.base_url(request)
        read = [{"code": "read"}]
        return Response(
            {
                "resourceType": "CapabilityStatement",
                "status": "active",
                "date": "2026-12-05",
                "publisher": "NeoPain",
                "kind": "instance",
                "software": {"name": "NeoPain"},
                "implementation": {"description": "NeoPain neonatal pain triage", "url": base},
                "fhirVersion": resources.FHIR_VERSION,
                "format": ["json"],
                "instantiates": ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"],
                "rest": [
                    {
                        "mode": "server",
                        "documentation": "Authentication as the REST API (Authorization: Token ...); data of the caller's unit only.",
                        "security": {
                            "description": "API token or session of a nurse or unit admin; Bulk Data export: unit admins.",
                        },
                        "resource": [
                            {
                                "type": "Observation",
                                "interaction": [*read, {"code": "search-type"}],
                                "searchParam": [
                                    {"name": "patient", "type": "reference", "documentation": "MRN or Patient/<id>"},
                                    {"name": "subject", "type": "reference"},
                                    {"name": "date", "type": "date", "documentation": "eq, ge, gt, le, lt"},
                                    {"name": "code", "type": "token", "documentation": "nips-total, nips-review, ai-pain-verdict"},
                                    {"name": "_count", "type": "number"},
                                ],
                            },
                            {"type": "Patient", "interaction": read},
                            {"type": "Practitioner", "interaction": read},
                            {"type": "Device", "interaction": read},
                            {"type": "Flag", "interaction": read},
                            {"type": "CodeSystem", "interaction": read},
                        ],
                        "operation": [
                            {
                                "name": "export",
                                "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                            }
                        ],
                    }
                ],
            }
        )


class CodeSystemApi(FhirApi):
    """``GET /fhir/CodeSystem/neopain``: NeoPain's own codes. Open to all."""

    authentication_classes = []
    permission_classes = [AllowAny]

    def get(self, request, pk: str):
        if pk != "neopain":
            raise not_found()
        return Response(resources.code_system())


class ObservationReadApi(FhirApi):
    def get(self, request, pk: str):
        row = selectors.observation_row(unit_id=self.unit_id(request), resource_id=pk)
        if row is None:
            raise not_found(f"Observation/{pk} is not known.")
        return Response(observation_resource(row))


class ObservationSearchApi(FhirApi):
    """``GET /fhir/Observation?patient=MRN&date=ge2026-12-01&_count=50``: a searchset Bundle, paged."""

    def get(self, request):
        query, offset, count = observation_query(request)
        rows, total = selectors.observation_search(
            unit_id=self.unit_id(request), query=query, offset=offset, count=count
        )
        base = self.base_url(request)
        params = [(k, v) for k, values in request.query_params.lists() if k != "_offset" for v in values]
        self_url = f"{base}/Observation?{urlencode([*params, ('_offset', offset)])}"
        next_url = None
        if offset + count < total:
            next_url = f"{base}/Observation?{urlencode([*params, ('_offset', offset + count)])}"
        entries = [observation_resource(row) for row in rows]
        return Response(resources.searchset(entries, total=total, self_url=self_url, next_url=next_url, base=base))


class PatientReadApi(FhirApi):
    def get(self, request, pk: str):
        row = selectors.neonates(unit_id=self.unit_id(request)).filter(pk=pk).first() if pk.isdigit() else None
        if row is None:
            raise not_found(f"Patient/{pk} is not known.")
        return Response(resources.patient(row))


class PractitionerReadApi(FhirApi):
    def get(self, request, pk: str):
        row = selectors.practitioners(unit_id=self.unit_id(request)).filter(pk=pk).first() if pk.isdigit() else None
        if row is None:
            raise not_found(f"Practitioner/{pk} is not known.")
        return Response(resources.practitioner(row))


class DeviceReadApi(FhirApi):
    def get(self, request, pk: str):
        row = selectors.devices(unit_id=self.unit_id(request)).filter(pk=pk).first() if pk.isdigit() else None
        if row is None:
            raise not_found(f"Device/{pk} is not known.")
        return Response(resources.device(row))


class FlagReadApi(FhirApi):
    """``GET /fhir/Flag/alert-<id>``: a pain alert (what the push sends the EHR for each alert)."""

    def get(self, request, pk: str):
        number = pk.removeprefix("alert-")
        row = selectors.alerts(unit_id=self.unit_id(request)).filter(pk=number).first() if number.isdigit() else None
        if row is None or not pk.startswith("alert-"):
            raise not_found(f"Flag/{pk} is not known.")
        return Response(resources.alert_flag(row))


class UnknownApi(FhirApi):
    """Any other /fhir/ path: a 404 OperationOutcome (after authentication, like every data route)."""

    def get(self, request, rest: str = ""):
        raise not_found(f"{request.path} is not supported here (see /fhir/metadata).")

    post = put = patch = delete = get
