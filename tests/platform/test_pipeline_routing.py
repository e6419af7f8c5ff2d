"""frames_process: routing at the threshold, alerts and cooldown, idempotency, batching, faults."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError
from django.utils import timezone

from tests.factories import FrameFactory, ModelVersionFactory, NeonateFactory, PredictionFactory, png_bytes
from triage import services
from triage.models import Alert, Frame, Prediction, TriageCase, UnitSettings
from triage.services import enqueue

pytestmark = pytest.mark.django_db


def queued_frame(neonate, seed=0, **kwargs):
    data = png_bytes(seed=seed)
    frame = FrameFactory(neonate=neonate, status=Frame.Status.QUEUED, content=data, **kwargs)
    return frame, data


def set_policy(unit, **values):
    UnitSettings.objects.filter(unit=unit).update(**values)


def test_it_routes_confidence_exactly_at_the_threshold_to_auto(neonate, active_model, fake_pipeline):
    frame, data = queued_frame(neonate)
    fake_pipeline.set(data, p_pain=0.55)

    services.frames_process(frame_ids=[frame.pk])

    prediction = Prediction.objects.get(frame=frame)
    assert prediction.routed_to == "auto"
    assert prediction.threshold == pytest.approx(0.55)
    assert prediction.confidence == pytest.approx(0.55)
    assert not TriageCase.objects.exists()


def test_it_routes_low_confidence_to_nurse(neonate, active_model, fake_pipeline):
    frame, data = queued_frame(neonate)
    fake_pipeline.set(data, p_pain=0.549)

    services.frames_process(frame_ids=[frame.pk])

    prediction = Prediction.objects.get(frame=frame)
    assert prediction.routed_to == "nurse"
    case = TriageCase.objects.get(prediction=prediction)
    assert (case.status, case.unit, case.neonate) == ("open", neonate.unit, neonate)
    assert case.confidence == pytest.approx(0.549)
    assert not Alert.objects.exists()


def test_the_bootstrap_model_never_decides_alone(neonate, active_model, fake_pipeline):
    active_model.is_bootstrap = True
    active_model.save(update_fields=["is_bootstrap"])
    frame, data = queued_frame(neonate)
    fake_pipeline.set(data, p_pain=0.97)

    services.frames_process(frame_ids=[frame.pk])

    prediction = Prediction.objects.get(frame=frame)
    assert (prediction.routed_to, prediction.label) == ("nurse", "pain")
    assert TriageCase.objects.filter(prediction=prediction, status="open").exists()
    assert not Alert.objects.exists()


def test_it_stores_the_units_threshold_in_force(neonate, active_model, fake_pipeline):
    set_policy(neonate.unit, threshold=0.8)
    frame, data = queued_frame(neonate)
    fake_pipeline.set(data, p_pain=0.75)

    services.frames_process(frame_ids=[frame.pk])

    prediction = Prediction.objects.get(frame=frame)
    assert (prediction.threshold, prediction.routed_to) == (pytest.approx(0.8), "nurse")


def test_an_automatic_pain_verdict_raises_an_auto_alert(neonate, active_model, fake_pipeline):
    set_policy(neonate.unit, alert_rule_k=1, alert_rule_n=1)  # every automatic pain verdict alerts
    frame, data = queued_frame(neonate)
    fake_pipeline.set(data, p_pain=0.95)

    services.frames_process(frame_ids=[frame.pk])

    alert = Alert.objects.get()
    assert (alert.source, alert.neonate, alert.prediction.frame) == ("auto", neonate, frame)
    frame.refresh_from_db()
    assert frame.status == "done"


def test_an_automatic_no_pain_verdict_raises_nothing(neonate, active_model, fake_pipeline):
    frame, data = queued_frame(neonate)
    fake_pipeline.set(data, p_pain=0.05)

    services.frames_process(frame_ids=[frame.pk])

    assert Prediction.objects.get(frame=frame).routed_to == "auto"
    assert not Alert.objects.exists() and not TriageCase.objects.exists()


def test_repeats_inside_the_cooldown_are_counted_not_realerted(neonate, active_model, fake_pipeline):
    set_policy(neonate.unit, alert_cooldown_minutes=10, alert_rule_k=1, alert_rule_n=1)
    fake_pipeline.p_pain = 0.95
    frames = [queued_frame(neonate, seed=i)[0] for i in range(3)]

    for frame in frames:
        services.frames_process(frame_ids=[frame.pk], batch_max=1)

    alert = Alert.objects.get()
    assert alert.suppressed_count == 2


def test_double_scoring_share_requires_two_assessments(neonate, active_model, fake_pipeline):
    set_policy(neonate.unit, double_scoring_share=1.0)
    frame, data = queued_frame(neonate)
    fake_pipeline.set(data, p_pain=0.5)

    services.frames_process(frame_ids=[frame.pk])

    assert TriageCase.objects.get().assessments_required == 2


def test_without_double_scoring_one_assessment_is_required(neonate, active_model, fake_pipeline):
    frame, data = queued_frame(neonate)
    fake_pipeline.set(data, p_pain=0.5)

    services.frames_process(frame_ids=[frame.pk])

    assert TriageCase.objects.get().assessments_required == 1


@pytest.mark.parametrize(
    ("status", "reason", "frame_status"),
    [("no_face", "no face found", "no_face"), ("unreadable", "corrupt or truncated JPEG data", "failed")],
)
def test_a_frame_without_a_face_gets_its_reason(neonate, active_model, fake_pipeline, status, reason, frame_status):
    frame, data = queued_frame(neonate)
    fake_pipeline.set(data, status=status, reason=reason)

    services.frames_process(frame_ids=[frame.pk])

    frame.refresh_from_db()
    assert (frame.status, frame.reason) == (frame_status, reason)
    assert not Prediction.objects.exists()


def test_the_same_task_twice_makes_one_prediction(neonate, active_model, fake_pipeline):
    from triage.tasks import frame_process

    frame, _ = queued_frame(neonate)

    frame_process.apply(args=[frame.pk]).get()
    second = frame_process.apply(args=[frame.pk]).get()

    assert Prediction.objects.filter(frame=frame).count() == 1
    assert second["claimed"] == 0
    assert fake_pipeline.calls == [1]


def test_a_redelivery_that_finds_the_prediction_is_a_no_op(neonate, active_model, fake_pipeline):
    frame, _ = queued_frame(neonate)
    PredictionFactory(frame=frame, model_version=active_model)  # recorded, but the frame row lagged behind

    counts = services.frames_process(frame_ids=[frame.pk])

    assert counts["duplicate"] == 1
    assert Prediction.objects.filter(frame=frame).count() == 1
    frame.refresh_from_db()
    assert frame.status == "done"


def test_it_batches_waiting_frames_into_one_forward_pass(neonate, active_model, fake_pipeline):
    frames = [queued_frame(neonate, seed=i)[0] for i in range(3)]

    counts = services.frames_process(frame_ids=[frames[0].pk], batch_max=8)

    assert fake_pipeline.calls == [3]
    assert counts["done"] == 3
    assert set(Frame.objects.values_list("status", flat=True)) == {"done"}


def test_a_batch_takes_at_most_batch_max_frames(neonate, active_model, fake_pipeline):
    frames = [queued_frame(neonate, seed=i)[0] for i in range(3)]

    services.frames_process(frame_ids=[frames[2].pk], batch_max=2)

    frames[2].refresh_from_db()
    assert frames[2].status == "done"
    assert Frame.objects.filter(status="queued").count() == 1


def test_frames_of_a_unit_with_its_own_model_are_batched_apart(neonate, other_neonate, active_model, fake_pipeline):
    ModelVersionFactory(unit=other_neonate.unit, name="south-model")
    mine, _ = queued_frame(neonate, seed=1)
    theirs, _ = queued_frame(other_neonate, seed=2)

    services.frames_process(frame_ids=[mine.pk])

    theirs.refresh_from_db()
    assert theirs.status == "queued"
    services.frames_process(frame_ids=[theirs.pk])
    assert Prediction.objects.get(frame=theirs).model_version.name == "south-model"


def test_a_unit_specific_model_wins_over_the_global_one(neonate, active_model, fake_pipeline):
    own = ModelVersionFactory(unit=neonate.unit, name="north-model")
    frame, _ = queued_frame(neonate)

    services.frames_process(frame_ids=[frame.pk])

    assert Prediction.objects.get(frame=frame).model_version == own


def test_without_an_active_model_frames_wait_in_the_queue(neonate, fake_pipeline):
    frame, _ = queued_frame(neonate)

    counts = services.frames_process(frame_ids=[frame.pk])

    frame.refresh_from_db()
    assert counts["waiting"] == 1
    assert frame.status == "queued" and frame.reason.startswith("waiting for an active model")
    assert fake_pipeline.calls == []


def test_a_frame_being_processed_elsewhere_is_left_alone(neonate, active_model, fake_pipeline):
    frame, _ = queued_frame(neonate)
    Frame.objects.filter(pk=frame.pk).update(status="processing", status_changed_at=timezone.now())

    assert services.frames_process(frame_ids=[frame.pk])["claimed"] == 0


def test_a_frame_abandoned_by_a_dead_worker_is_reclaimed_by_its_redelivery(
    neonate, active_model, fake_pipeline, settings
):
    frame, _ = queued_frame(neonate)
    Frame.objects.filter(pk=frame.pk).update(
        status="processing", status_changed_at=timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 5)
    )

    services.frames_process(frame_ids=[frame.pk])

    frame.refresh_from_db()
    assert frame.status == "done"


def test_a_transient_database_fault_releases_the_frames_and_asks_for_a_retry(
    neonate, active_model, fake_pipeline, monkeypatch
):
    frame, _ = queued_frame(neonate)

    def broken(images):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(fake_pipeline, "run_batch", broken)

    with pytest.raises(services.FramesRetry):
        services.frames_process(frame_ids=[frame.pk])

    frame.refresh_from_db()
    assert frame.status == "queued" and "OperationalError" in frame.reason
    assert frame.attempts == 1


def test_the_task_retries_transient_faults(neonate, active_model, fake_pipeline, monkeypatch):
    from triage.tasks import frame_process

    frame, _ = queued_frame(neonate)
    monkeypatch.setattr(fake_pipeline, "run_batch", lambda images: (_ for _ in ()).throw(OSError("disk hiccup")))
    retried = []
    monkeypatch.setattr(
        frame_process, "retry", lambda *a, **kw: retried.append(kw) or (_ for _ in ()).throw(RuntimeError("retry"))
    )

    with pytest.raises(RuntimeError, match="retry"):
        frame_process.apply(args=[frame.pk], throw=True).get()

    assert retried and "countdown" in retried[0]


def test_a_soft_time_limit_fails_the_frames_with_a_reason(neonate, active_model, fake_pipeline, monkeypatch):
    frame, _ = queued_frame(neonate)
    monkeypatch.setattr(fake_pipeline, "run_batch", lambda images: (_ for _ in ()).throw(SoftTimeLimitExceeded()))

    services.frames_process(frame_ids=[frame.pk])

    frame.refresh_from_db()
    assert (frame.status, frame.reason) == ("failed", "time limit exceeded")


def test_a_frame_that_keeps_failing_is_given_up(neonate, active_model, fake_pipeline, settings):
    settings.NEOPAIN_FRAME_MAX_ATTEMPTS = 3
    frame, _ = queued_frame(neonate, attempts=3)

    services.frames_process(frame_ids=[frame.pk])

    frame.refresh_from_db()
    assert (frame.status, frame.reason) == ("failed", "gave up after 3 attempts")


def test_a_stored_image_that_changed_after_upload_is_not_scored(neonate, active_model, fake_pipeline):
    frame, _ = queued_frame(neonate)
    with frame.image.open("wb") as handle:
        handle.write(png_bytes(seed=99))

    services.frames_process(frame_ids=[frame.pk])

    frame.refresh_from_db()
    assert (frame.status, frame.reason) == ("failed", "stored image does not match its upload hash")
    assert not Prediction.objects.exists()


def test_a_missing_stored_image_fails_the_frame(neonate, active_model, fake_pipeline):
    frame, _ = queued_frame(neonate)
    frame.image.storage.delete(frame.image.name)

    services.frames_process(frame_ids=[frame.pk])

    frame.refresh_from_db()
    assert (frame.status, frame.reason) == ("failed", "stored image file is missing")


def test_the_task_drops_a_message_for_a_deleted_frame(db):
    from triage.tasks import frame_process

    assert frame_process.apply(args=[987654]).get() is None


def test_the_sweeper_requeues_stuck_frames_and_publishes_them(neonate, monkeypatch, settings):
    published = []
    monkeypatch.setattr(enqueue, "frames_enqueue", lambda *, frame_ids: published.extend(frame_ids) or len(frame_ids))
    old = timezone.now() - timedelta(seconds=settings.NEOPAIN_STUCK_FRAME_SECONDS + 1)
    stuck_processing, _ = queued_frame(neonate, seed=1)
    stuck_queued, _ = queued_frame(neonate, seed=2)
    fresh, _ = queued_frame(neonate, seed=3)
    Frame.objects.filter(pk=stuck_processing.pk).update(status="processing", status_changed_at=old)
    Frame.objects.filter(pk=stuck_queued.pk).update(status_changed_at=old)

    result = services.frames_sweep()

    assert sorted(published) == sorted([stuck_processing.pk, stuck_queued.pk])
    assert result["frames"] == 2
    stuck_processing.refresh_from_db()
    assert stuck_processing.status == "queued"


def test_the_prediction_records_timings_and_hashes(neonate, active_model, fake_pipeline):
    frame, data = queued_frame(neonate)

    services.frames_process(frame_ids=[frame.pk])

    prediction = Prediction.objects.get(frame=frame)
    assert prediction.frame_sha256 == frame.sha256
    assert set(prediction.timings_ms) >= {"decode", "detect", "classify", "queue_wait"}
    assert prediction.crop.name.startswith("crops/")
    assert prediction.box == [4, 5, 30, 32]


def test_a_neonate_in_another_unit_is_routed_by_that_units_threshold(active_model, fake_pipeline, other_unit):
    set_policy(other_unit, threshold=0.95)
    frame, data = queued_frame(NeonateFactory(unit=other_unit))
    fake_pipeline.set(data, p_pain=0.9)

    services.frames_process(frame_ids=[frame.pk])

    assert Prediction.objects.get(frame=frame).routed_to == "nurse"


def test_an_audited_automatic_verdict_opens_a_blind_case_and_keeps_its_alert(neonate, active_model, fake_pipeline):
    set_policy(neonate.unit, audit_share=1.0, alert_rule_k=1, alert_rule_n=1)  # every automatic pain verdict alerts
    frame, data = queued_frame(neonate)
    fake_pipeline.set(data, p_pain=0.95)

    services.frames_process(frame_ids=[frame.pk])

    prediction = Prediction.objects.get(frame=frame)
    case = TriageCase.objects.get()
    assert prediction.routed_to == "auto" and case.is_audit and case.p_pain == pytest.approx(0.95)
    assert Alert.objects.get().source == "auto", "the automatic pain verdict still pages"


def test_the_audit_draw_is_a_uniform_share_of_frames_and_the_same_on_a_rerun(neonate):
    from triage.services.predictions import audit_drawn

    frames = [FrameFactory.build(neonate=neonate, sha256=hashlib.sha256(b"%d" % i).hexdigest()) for i in range(2000)]
    drawn = [audit_drawn(frame=f, share=0.05) for f in frames]
    assert 0.03 < sum(drawn) / len(drawn) < 0.07
    assert drawn == [audit_drawn(frame=f, share=0.05) for f in frames]
    assert not any(audit_drawn(frame=f, share=0.0) for f in frames)
