"""FHIR Bulk Data Access ``$export``: asynchronous kick-off, status polling, NDJSON files with auth.

Kick-off ``GET /fhir/$export`` (``Prefer: respond-async``) answers 202 with ``Content-Location`` (the
status URL); polling it answers 202 (``X-Progress``, ``Retry-After``) until the Celery task is done,
then 200 with the manifest; the manifest's file URLs need the same credentials
(``requiresAccessToken: true``). ``DELETE`` on the status URL cancels and deletes the files.
Unit admins export their unit (superusers: every unit).
"""

from __future__ import annotations

import uuid

from django.core.files.storage import default_storage
from django.http import FileResponse, JsonResponse
from rest_framework.response import Response

from ehr import resources, services
from ehr.apis.common import FhirApi, FhirError, not_found
from ehr.apis.params import since as since_param
from ehr.models import BulkExport
from triage.permissions import IsUnitAdmin

NDJSON_FORMATS = {"application/fhir+ndjson", "application/ndjson", "ndjson"}
EXPORT_PARAMS = {"_outputFormat", "_since", "_type"}


class _ExportApi(FhirApi):
    permission_classes = [IsUnitAdmin]

    def export_of(self, request, pk: str) -> BulkExport:
        exports = BulkExport.objects.all()
        unit_id = self.unit_id(request)
        if unit_id is not None:
            exports = exports.filter(unit_id=unit_id)
        export = exports.filter(pk=pk).first() if _is_uuid(pk) else None
        if export is None:
            raise not_found("No such export.")
        return export


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class ExportKickOffApi(_ExportApi):
    def get(self, request):
        if "respond-async" not in request.headers.get("Prefer", ""):
            raise FhirError("$export is asynchronous: send 'Prefer: respond-async'.", code="invalid")
        unknown = sorted(set(request.query_params) - EXPORT_PARAMS - {"_format"})
        if unknown:
            raise FhirError(f"Unsupported $export parameter(s): {', '.join(unknown)}.", code="not-supported")
        output_format = request.query_params.get("_outputFormat")
        if output_format and output_format not in NDJSON_FORMATS:
            raise FhirError("Only NDJSON is written (_outputFormat=application/fhir+ndjson).", code="not-supported")
        types = [t for t in request.query_params.get("_type", "").split(",") if t]
        bad = sorted(set(types) - set(services.EXPORT_TYPES))
        if bad:
            raise FhirError(
                f"Cannot export {', '.join(bad)} (only {', '.join(services.EXPORT_TYPES)}).", code="not-supported"
            )
        export = services.bulk_export_start(
            user=request.user,
            unit_id=self.unit_id(request),
            since=since_param(request),
            types=types,
            request_url=request.build_absolute_uri(),
            request=request,
        )
        response = Response(
            {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "information", "code": "informational", "diagnostics": "Export started."}],
            },
            status=202,
        )
        response["Content-Location"] = f"{self.base_url(request)}/$export-status/{export.pk}"
        return response


class ExportStatusApi(_ExportApi):
    def get(self, request, pk: str):
        export = self.export_of(request, pk)
        if export.status in (BulkExport.Status.QUEUED, BulkExport.Status.RUNNING):
            response = Response(status=202)
            response["X-Progress"] = export.status
            response["Retry-After"] = "5"
            return response
        if export.status == BulkExport.Status.FAILED:
            raise FhirError(f"The export failed: {export.error}", status=500, code="exception")
        if export.status == BulkExport.Status.CANCELLED:
            raise FhirError("The export was cancelled or has expired.", status=404, code="not-found")
        base = self.base_url(request)
        manifest = {
            "transactionTime": resources.instant(export.transaction_time),
            "request": export.request_url,
            "requiresAccessToken": True,
            "output": [
                {"type": f["type"], "url": f"{base}/$export-file/{export.pk}/{f['name']}", "count": f["count"]}
                for f in export.files
            ],
            "error": [],
        }
        # The Bulk Data manifest is plain JSON, not a FHIR resource.
        return JsonResponse(manifest, status=200)

    def delete(self, request, pk: str):
        export = self.export_of(request, pk)
        services.bulk_export_cancel(export=export, user=request.user, request=request)
        return Response(status=202)


class ExportFileApi(_ExportApi):
    def get(self, request, pk: str, name: str):
        export = self.export_of(request, pk)
        if export.status != BulkExport.Status.DONE or name not in {f["name"] for f in export.files}:
            raise not_found("No such file in this export.")
        handle = default_storage.open(f"{export.folder}/{name}", "rb")
        response = FileResponse(handle, content_type="application/fhir+ndjson")
        response["Cache-Control"] = "no-store"
        return response
