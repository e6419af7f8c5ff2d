"""Issue 6, Automated probing (lines 21-22): schemathesis against the live schema, bandit and pip-audit.

schemathesis reads ``/api/schema/`` as an authenticated caller, generates requests for every
operation (valid and invalid bodies, parameters and ids) and sends them through the WSGI app
in-process: every answer must be a documented, schema-conformant response and never a 5xx.
Bounded: a few examples per operation, no deadline, no shrinking.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from django.conf import settings as django_settings
from hypothesis import HealthCheck, Phase, assume, settings
from rest_framework.test import APIClient
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import api_token_for

ROOT = Path(django_settings.BASE_DIR)
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
EXAMPLES_PER_OPERATION = 12
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


@pytest.fixture
def callers(db, make_north, nurse, unit_admin) -> dict[str, str]:
    """Objects to find (so ids hit real rows sometimes) and a token per caller."""
    make_north()
    return {who.username: api_token_for(who) for who in (unit_admin, nurse)}


@pytest.fixture
def api_schema(callers):
    """The schema as served, bound to the WSGI app.

    The app's request signals would close the test's database connection after each request;
    Django's own test client unhooks them the same way.
    """
    from django.core import signals
    from django.core.wsgi import get_wsgi_application
    from django.db import close_old_connections

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {next(iter(callers.values()))}")
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    raw = json.loads(response.content)
    # After the test client's request: it reconnects these handlers when it is done.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield schemathesis.from_dict(
        raw,
        app=get_wsgi_application(),
        base_url="/",
        data_generation_methods=[
            schemathesis.DataGenerationMethod.positive,
            schemathesis.DataGenerationMethod.negative,
        ],
    )
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


schema = schemathesis.from_pytest_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_conforms_to_its_schema_and_never_errors(case, callers):
    # A form body that is not a mapping (a negative example) cannot be encoded by the WSGI transport at all.
    assume(not (case.media_type in FORM_TYPES and case.body is not None and not isinstance(case.body, dict)))
    for token in callers.values():
        response = case.call_wsgi(headers={"Authorization": f"Token {token}"})
        case.validate_response(response, checks=CHECKS)


# Digits that ``str.isdigit()`` (and some of ``int()``) accept but an id, a page or a date cannot be:
# superscript two, Arabic-Indic three, full-width one-two (issue 16: ``?unit=²`` was a 500).
NON_ASCII_DIGITS = ("²", "٣", "１２")


def test_query_parameters_with_non_ascii_digits_are_never_a_server_error(api_schema, callers):
    """Every declared query parameter of every GET operation of the served schema, set to each
    non-ASCII digit string, sent by schemathesis: a documented answer (a 4xx), never a 5xx."""
    token = next(iter(callers.values()))
    sent = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        if operation.method.upper() != "GET" or list(operation.path_parameters):
            continue
        for name in [parameter.name for parameter in operation.query]:
            for value in NON_ASCII_DIGITS:
                case = operation.make_case(query={name: value})
                response = case.call_wsgi(headers={"Authorization": f"Token {token}"})
                case.validate_response(response, checks=(not_a_server_error, status_code_conformance))
                sent.append((operation.path, name, response.status_code))

    assert len({(path, name) for path, name, _ in sent}) >= 8, sent
    assert ("/api/v1/assessments/export.csv", "unit", 400) in sent


# --- 22. bandit and pip-audit --------------------------------------------------------------------

PROJECT_CODE = ["inference", "triage", "annotations", "neopain_site", "scripts", "manage.py"]


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else (shutil.which(name) or pytest.skip(f"{name} is not installed"))


@pytest.mark.slow
def test_bandit_finds_no_high_severity_issue_in_the_project_code():
    result = subprocess.run(
        [
            _tool("bandit"),
            "-q",
            "-r",
            *PROJECT_CODE,
            "--severity-level",
            "high",
            "--confidence-level",
            "medium",
            "-f",
            "json",
            "-x",
            "*/tests/*,*/migrations/*",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    report = json.loads(result.stdout)
    scanned = report["metrics"]["_totals"]["loc"]
    findings = [(r["filename"], r["line_number"], r["test_id"], r["issue_text"]) for r in report["results"]]

    assert scanned > 5000, "bandit scanned almost nothing: wrong paths?"
    assert findings == []


# Findings accepted after review, each explained in docs/security.md: (package, advisory id).
ACCEPTED_ADVISORIES: set[tuple[str, str]] = set()


@pytest.mark.slow
def test_pip_audit_finds_no_known_vulnerability_in_the_installed_dependencies():
    """Needs the PyPI/OSV vulnerability service; without it nothing can be audited, and the test says so."""
    result = subprocess.run(
        [_tool("pip-audit"), "--progress-spinner", "off", "--skip-editable", "-f", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        pytest.skip(f"pip-audit could not run (no network to its vulnerability service?): {result.stderr[-500:]}")
    dependencies = json.loads(result.stdout)["dependencies"]
    audited = [d for d in dependencies if not d.get("skip_reason")]
    if not audited:
        pytest.skip(
            f"the vulnerability service was unreachable: none of {len(dependencies)} packages was audited "
            "(run `make audit` where pypi.org or OSV is reachable; see docs/security.md)"
        )
    findings = {(d["name"], v["id"]) for d in audited for v in d.get("vulns", [])}

    assert len(audited) > 20
    assert sorted(findings - ACCEPTED_ADVISORIES) == []
