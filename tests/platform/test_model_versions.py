"""model_version_register / model_version_activate and the real bootstrap model end to end in-process."""

from __future__ import annotations

import shutil

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from tests.factories import FrameFactory, ModelVersionFactory
from tests.platform.conftest import astronaut_jpeg
from triage import services
from triage.models import AuditEvent, Frame, ModelVersion, Prediction
from triage.services import enqueue

pytestmark = pytest.mark.django_db


@pytest.fixture
def bundle_copy(bootstrap_bundle, tmp_path):
    path = tmp_path / "bundle.pt"
    shutil.copyfile(bootstrap_bundle, path)
    return path


def test_it_registers_a_bundle_from_its_own_metadata(bundle_copy):
    from inference.bundle import sha256_file

    model = services.model_version_register(bundle_path=bundle_copy)

    assert model.status == "candidate"
    assert (model.name, model.version) == ("bootstrap-fer-proxy", "1.0.0")
    assert model.is_bootstrap is True
    assert model.architecture == "fer_proxy"
    assert model.sha256 == sha256_file(bundle_copy)
    assert model.metrics["evaluated_on_neonates"] is False
    assert model.bundle_path == str(bundle_copy.resolve())
    assert AuditEvent.objects.filter(action="model.registered", object_id=str(model.pk)).exists()


def test_registering_the_same_bundle_twice_is_idempotent(bundle_copy, tmp_path):
    first = services.model_version_register(bundle_path=bundle_copy)
    moved = tmp_path / "moved.pt"
    shutil.copyfile(bundle_copy, moved)

    second = services.model_version_register(bundle_path=moved, metrics={"auc": 0.9})

    assert second.pk == first.pk
    assert ModelVersion.objects.count() == 1
    assert second.metrics == {"auc": 0.9}


def test_it_refuses_a_file_that_is_not_a_bundle(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a bundle")

    with pytest.raises(ValidationError) as excinfo:
        services.model_version_register(bundle_path=junk)

    assert "Not a valid model bundle" in str(excinfo.value)
    assert not ModelVersion.objects.exists()


def test_it_refuses_a_missing_file(tmp_path):
    with pytest.raises(ValidationError, match="No such file"):
        services.model_version_register(bundle_path=tmp_path / "nope.pt")


def test_activation_retires_the_previous_active_model_and_is_audited(bundle_copy, ml_engineer):
    previous = ModelVersionFactory(status="active", unit=None, bundle_path=str(bundle_copy))
    model = services.model_version_register(bundle_path=bundle_copy, unit=None)

    services.model_version_activate(model_version=model, actor=ml_engineer)

    previous.refresh_from_db()
    model.refresh_from_db()
    assert (previous.status, model.status) == ("retired", "active")
    assert model.activated_by == ml_engineer and model.activated_at is not None
    event = AuditEvent.objects.get(action="model.activated")
    assert event.actor == ml_engineer
    assert event.before["active"][0]["id"] == previous.pk
    assert event.after["active"]["id"] == model.pk


def test_a_unit_model_does_not_retire_the_global_one(bundle_copy, unit):
    global_model = ModelVersionFactory(status="active", unit=None)
    unit_model = services.model_version_register(bundle_path=bundle_copy, unit=unit, status="active")

    global_model.refresh_from_db()
    assert global_model.status == "active" and unit_model.status == "active"


def test_activation_refuses_a_bundle_changed_since_registration(bundle_copy):
    model = services.model_version_register(bundle_path=bundle_copy)
    with open(bundle_copy, "ab") as handle:
        handle.write(b"tampered")

    with pytest.raises(ValidationError, match="not the registered"):
        services.model_version_activate(model_version=model, actor=None)

    model.refresh_from_db()
    assert model.status == "candidate"


@pytest.mark.parametrize("who", ["nurse", "unit_admin", "device"])
def test_only_ml_engineers_activate_global_models(bundle_copy, request, who):
    model = services.model_version_register(bundle_path=bundle_copy)
    actor = request.getfixturevalue(who)
    actor = actor.user if who == "device" else actor

    with pytest.raises(PermissionDenied):
        services.model_version_activate(model_version=model, actor=actor)


def test_the_bootstrap_model_scores_a_real_face_in_process(bundle_copy, neonate, settings):
    settings.NEOPAIN_SALIENCY = True
    model = services.model_version_register(bundle_path=bundle_copy, status="active")
    data = astronaut_jpeg()
    frame, created = services.frame_ingest(neonate=neonate, image_file=data, uploaded_by=None)

    counts = services.frames_process(frame_ids=[frame.pk])

    assert created and counts["done"] == 1
    frame.refresh_from_db()
    assert frame.status == "done"
    prediction = Prediction.objects.get(frame=frame)
    assert prediction.model_version == model
    assert prediction.weights_sha256 == model.sha256
    assert prediction.frame_sha256 == frame.sha256
    assert prediction.threshold == pytest.approx(0.55)
    assert prediction.routed_to in {"auto", "nurse"}
    assert 0.0 <= prediction.p_pain <= 1.0
    assert prediction.box_w > 50 and prediction.box_h > 50  # the astronaut's face, not the whole image
    assert prediction.crop.name
    if prediction.routed_to == "nurse":
        # The overlay is stored when the Grad-CAM map shows something (tests/platform/test_batch_record.py).
        assert prediction.case.status == "open"


def test_a_blank_image_ends_as_no_face(bundle_copy, neonate):
    from tests.factories import png_bytes

    services.model_version_register(bundle_path=bundle_copy, status="active")
    frame, _ = services.frame_ingest(neonate=neonate, image_file=png_bytes(size=(200, 200)), uploaded_by=None)

    services.frames_process(frame_ids=[frame.pk])

    frame.refresh_from_db()
    assert frame.status == "no_face" and frame.reason


def test_a_bundle_swapped_on_disk_fails_frames_instead_of_misscoring(bundle_copy, neonate):
    services.model_version_register(bundle_path=bundle_copy, status="active")
    with open(bundle_copy, "ab") as handle:
        handle.write(b"swapped")
    frame = FrameFactory(neonate=neonate, status="queued")

    services.frames_process(frame_ids=[frame.pk])

    frame.refresh_from_db()
    assert frame.status == "failed"
    assert "cannot be used" in frame.reason and "sha256" in frame.reason
    assert not Prediction.objects.exists()


def test_a_new_activation_is_used_on_the_next_batch_without_restart(bundle_copy, tmp_path, neonate, fake_pipeline):
    first = ModelVersionFactory(status="active", unit=None, name="first", bundle_path=str(bundle_copy))
    frame_a = FrameFactory(neonate=neonate, status="queued")
    services.frames_process(frame_ids=[frame_a.pk])
    second = services.model_version_register(bundle_path=bundle_copy, status="active")
    frame_b = FrameFactory(neonate=neonate, status="queued")

    services.frames_process(frame_ids=[frame_b.pk])

    assert Prediction.objects.get(frame=frame_a).model_version == first
    assert Prediction.objects.get(frame=frame_b).model_version == second


def test_frames_waiting_for_a_model_are_published_on_activation(
    bundle_copy, neonate, fake_pipeline, monkeypatch, django_capture_on_commit_callbacks
):
    published = []
    monkeypatch.setattr(enqueue, "frames_enqueue", lambda *, frame_ids: published.extend(frame_ids) or len(frame_ids))
    frame = FrameFactory(neonate=neonate, status="queued")
    services.frames_process(frame_ids=[frame.pk])
    assert Frame.objects.get(pk=frame.pk).reason.startswith("waiting")

    with django_capture_on_commit_callbacks(execute=True):
        services.model_version_register(bundle_path=bundle_copy, status="active")

    assert published == [frame.pk]


def test_a_worker_preloads_every_active_model(bundle_copy, unit):
    from inference.pipeline import Pipeline

    services.model_version_register(bundle_path=bundle_copy, status="active")
    services.model_version_register(bundle_path=bundle_copy, unit=unit, status="active")

    assert services.pipelines_warm() == 2
    pipeline, detector = services._pipeline_for(classifier=ModelVersion.objects.filter(unit=None).get(), detector=None)
    assert isinstance(pipeline, Pipeline) and detector == "retinaface"
