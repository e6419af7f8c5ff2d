"""FHIR R4 for the EHR: read and search API under /fhir/, Bulk Data export, and the push outbox.

Named ``ehr``, not ``fhir``: the ``fhir.resources`` package (used by the tests to validate what we emit)
owns the top-level ``fhir`` name.
"""
