"""predictions_record: a batch's predictions, cases and frame states written together, same results as one by one."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import FrameFactory, PredictionFactory, png_bytes
from tests.platform.conftest import make_outcome
from triage import services
from triage.models import Alert, Frame, Prediction, TriageCase, UnitSettings

pytestmark = pytest.mark.django_db


def processing_frames(neonate, count, *, first_seed=0):
    frames, blobs = [], []
    for seed in range(first_seed, first_seed + count):
        data = png_bytes(seed=seed)
        frames.append(FrameFactory(neonate=neonate, status=Frame.Status.PROCESSING, content=data))
        blobs.append(data)
    return frames, blobs


def record(frames, outcomes, model):
    return services.predictions_record(
        frames=frames, outcomes=outcomes, classifier=model, detector=None, detector_name="retinaface"
    )


def stored_crops() -> set[str]:
    from pathlib import Path

    from django.conf import settings

    root = Path(settings.MEDIA_ROOT) / "crops"
    return {path.name for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def test_a_mixed_batch_is_recorded_as_frame_by_frame_would(neonate, active_model, settings):
    settings.NEOPAIN_SALIENCY = False
    UnitSettings.objects.filter(unit=neonate.unit).update(
        threshold=0.6, alert_cooldown_minutes=0, alert_rule_k=1, alert_rule_n=1  # one pain verdict alerts
    )
    frames, blobs = processing_frames(neonate, 4)
    outcomes = [
        make_outcome(data=blobs[0], p_pain=0.55),  # nurse
        make_outcome(data=blobs[1], p_pain=0.93),  # automatic pain: alert
        make_outcome(data=blobs[2], status="no_face", reason="no face detected"),
        make_outcome(data=blobs[3], p_pain=0.05),  # automatic non-pain
    ]

    results = record(frames, outcomes, active_model)

    assert results == ["done", "done", "no_face", "done"]
    statuses = dict(Frame.objects.values_list("pk", "status"))
    assert [statuses[f.pk] for f in frames] == ["done", "done", "no_face", "done"]
    routes = dict(Prediction.objects.values_list("frame_id", "routed_to"))
    assert routes == {frames[0].pk: "nurse", frames[1].pk: "auto", frames[3].pk: "auto"}
    case = TriageCase.objects.get()
    assert (case.prediction.frame_id, case.status, case.unit_id) == (frames[0].pk, "open", neonate.unit_id)
    assert Alert.objects.get().prediction.frame_id == frames[1].pk
    for prediction in Prediction.objects.all():
        assert prediction.threshold == pytest.approx(0.6)
        assert prediction.crop.name and default_storage.exists(prediction.crop.name)


def test_the_writes_of_a_batch_do_not_grow_with_its_size(neonate, active_model, settings):
    settings.NEOPAIN_SALIENCY = False

    def queries_for(count, first_seed):
        frames, blobs = processing_frames(neonate, count, first_seed=first_seed)
        outcomes = [make_outcome(data=data, p_pain=0.52) for data in blobs]  # all to nurses (threshold 0.55)
        with CaptureQueriesContext(connection) as captured:
            assert record(frames, outcomes, active_model) == ["done"] * count
        return len(captured.captured_queries)

    assert queries_for(2, 0) == queries_for(8, 100)
    assert TriageCase.objects.count() == 10


def test_a_duplicate_in_the_batch_falls_back_to_frame_by_frame_and_leaves_no_orphan_files(
    neonate, active_model, settings
):
    settings.NEOPAIN_SALIENCY = False
    frames, blobs = processing_frames(neonate, 3)
    PredictionFactory(frame=frames[1], model_version=active_model)  # a redelivered message's frame
    before = stored_crops()
    outcomes = [make_outcome(data=data, p_pain=0.52) for data in blobs]

    results = record(frames, outcomes, active_model)

    assert results == ["done", "duplicate", "done"]
    assert Prediction.objects.filter(frame=frames[1]).count() == 1
    assert TriageCase.objects.filter(prediction__frame__in=[frames[0], frames[2]]).count() == 2
    assert set(Frame.objects.values_list("status", flat=True)) == {"done"}
    # The batch attempt's crops were removed; only the two recorded predictions' crops remain.
    new = stored_crops() - before
    kept = {p.crop.name.rsplit("/", 1)[-1] for p in Prediction.objects.filter(frame__in=[frames[0], frames[2]])}
    assert new == kept


def test_a_database_failure_writes_nothing_and_removes_the_batchs_files(neonate, active_model, settings, monkeypatch):
    from django.db import OperationalError

    settings.NEOPAIN_SALIENCY = False
    frames, blobs = processing_frames(neonate, 2)
    before = stored_crops()

    def refuse(*args, **kwargs):
        raise OperationalError("database went away")

    monkeypatch.setattr(TriageCase.objects, "bulk_create", refuse)
    with pytest.raises(OperationalError):
        record(frames, [make_outcome(data=data, p_pain=0.52) for data in blobs], active_model)

    assert not Prediction.objects.exists()
    assert stored_crops() == before
    assert set(Frame.objects.values_list("status", flat=True)) == {"processing"}


def test_the_nurse_gets_a_gradcam_overlay_only_when_the_map_shows_something():
    from types import SimpleNamespace

    import numpy as np
    from PIL import Image

    pipeline = SimpleNamespace(model=SimpleNamespace(spec={"size": 224, "fill": (0, 0, 0)}))
    crop = Image.new("RGB", (224, 224), (150, 120, 100))
    hot_spot = np.zeros((224, 224), dtype=np.float32)
    hot_spot[60:120, 80:150] = 1.0

    overlay = services._saliency_image(pipeline=pipeline, crop=crop, cam=hot_spot)
    assert overlay is not None and Image.open(io.BytesIO(overlay)).format == "JPEG"
    # Nothing on the face raised the pain score: no uniformly tinted "where the model looked" image.
    assert services._saliency_image(pipeline=pipeline, crop=crop, cam=np.zeros((224, 224), np.float32)) is None


def test_a_crop_the_gpu_pipeline_encoded_is_stored_as_it_came(neonate, active_model, settings):
    settings.NEOPAIN_SALIENCY = False
    frames, blobs = processing_frames(neonate, 2)
    encoded = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (224, 224), (10, 200, 30)).save(encoded, format="JPEG", quality=90)
    outcomes = [make_outcome(data=blob, p_pain=0.55) for blob in blobs]
    outcomes[0].crop_jpeg = encoded.getvalue()  # TensorPipeline on CUDA: encoded in its thread pool

    assert record(frames, outcomes, active_model) == ["done", "done"]
    stored = {p.frame_id: p.crop.read() for p in Prediction.objects.all()}
    assert stored[frames[0].pk] == encoded.getvalue()
    assert stored[frames[1].pk] != encoded.getvalue()  # no crop_jpeg: encoded by the worker, as before
    assert Image.open(io.BytesIO(stored[frames[1].pk])).format == "JPEG"
