"""Shared fixtures: named people for permission tests (healthchecks-style), their neonates, a model row,
API clients and session (browser) clients. A folder's conftest may override any of them (tests/ui does)."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import (
    TEST_PASSWORD,
    DeviceFactory,
    ModelVersionFactory,
    NeonateFactory,
    UnitFactory,
    UserFactory,
    api_token_for,
)
from triage.models import Role


@pytest.fixture(autouse=True)
def _private_media(settings, tmp_path):
    """Each test writes uploads into its own folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            **settings.STORAGES["default"],
            "OPTIONS": {"location": str(tmp_path / "media"), "base_url": "/nonexistent-private/"},
        },
    }


@pytest.fixture
def password() -> str:
    return TEST_PASSWORD


@pytest.fixture
def unit(db):
    return UnitFactory(name="NICU North", code="north")


@pytest.fixture
def other_unit(db):
    return UnitFactory(name="NICU South", code="south")


@pytest.fixture
def nurse(unit):
    return UserFactory(username="alice", role=Role.NURSE, unit=unit, first_name="Alice")


@pytest.fixture
def second_nurse(unit):
    return UserFactory(username="bella", role=Role.NURSE, unit=unit, first_name="Bella")


@pytest.fixture
def other_nurse(other_unit):
    return UserFactory(username="olga", role=Role.NURSE, unit=other_unit, first_name="Olga")


@pytest.fixture
def unit_admin(unit):
    return UserFactory(username="adam", role=Role.UNIT_ADMIN, unit=unit, first_name="Adam")


@pytest.fixture
def ml_engineer(db):
    return UserFactory(username="mia", role=Role.ML_ENGINEER, unit=None, first_name="Mia")


@pytest.fixture
def other_unit_admin(other_unit):
    return UserFactory(username="oscar", role=Role.UNIT_ADMIN, unit=other_unit)


@pytest.fixture
def device(unit):
    return DeviceFactory(name="bed-1-cam", unit=unit, user=UserFactory(username="cam1", role=Role.DEVICE, unit=unit))


@pytest.fixture
def neonate(unit):
    return NeonateFactory(mrn="MRN-NORTH-1", bed="3", unit=unit)


@pytest.fixture
def other_neonate(other_unit):
    return NeonateFactory(mrn="MRN-SOUTH-1", bed="7", unit=other_unit)


@pytest.fixture
def model(db):
    """A registered global classifier row (no bundle behind it: tests that run inference register a real one)."""
    return ModelVersionFactory(name="painnet", version="2.1", unit=None)


def _token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_for(user)}")
    return client


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def client_for():
    """``client_for(user)`` -> an APIClient authenticated with a new API token of the user (None -> anonymous)."""
    return lambda user: APIClient() if user is None else _token_client(user)


@pytest.fixture
def browser_for():
    """``browser_for(user)`` -> a Django test Client with a session (the HTML pages); None -> anonymous."""

    def make(user):
        client = Client()
        if user is not None:
            client.force_login(user)
        return client

    return make
