"""A registered baseline model served by the worker gives the p_pain its evaluation gives on the same
frames, baseline included; cold start, bounded window and rebuild on a model change."""

from __future__ import annotations

import pytest
from django.urls import reverse

from inference import training as tr
from inference.baseline import model_evaluate_p_pain
from inference.bundle import load_bundle
from tests.factories import FrameFactory
from triage import services
from triage.models import Frame, NeonateBaseline, Prediction, UnitSettings

pytestmark = pytest.mark.django_db

MIN_FRAMES, WINDOW = 3, 5


@pytest.fixture(scope="module")
def planted_crops(planted, crop_cache):
    return tr.face_crops(tr.dataset_read(planted), cache_dir=crop_cache, progress=False)


@pytest.fixture(scope="module")
def trained(planted_crops):
    """A real head-only model trained with the per-neonate baseline (a few epochs: the maths, not the skill)."""
    config = tr.TrainConfig.for_recipe(
        "default",
        finetune="head",
        baseline="neonate",
        baseline_min_frames=MIN_FRAMES,
        baseline_window=WINDOW,
        epochs=3,
        augment_views=0,
        val_subjects=3,
    )
    return tr.train_model(planted_crops, config=config, progress=False)


def bundle(trained, tmp_path, version):
    path = tmp_path / f"baseline-{version}.pt"
    tr.bundle_write(trained, path, version=version)
    return path


def queued(neonate, images):
    return [
        FrameFactory(neonate=neonate, status=Frame.Status.QUEUED, content=image.path.read_bytes()) for image in images
    ]


def test_served_p_pain_equals_the_evaluation_with_the_same_baseline(
    neonate, nurse, browser_for, planted_crops, trained, tmp_path, settings
):
    settings.NEOPAIN_SALIENCY = False
    path = bundle(trained, tmp_path, "a")
    version = services.model_version_register(bundle_path=path, status="active")
    loaded = load_bundle(path)
    assert trained.metadata["baseline"]["min_frames"] == MIN_FRAMES
    subject = planted_crops.subjects[0]
    rows = [i for i, s in enumerate(planted_crops.subjects) if s == subject]
    images = [planted_crops.images[i] for i in rows]
    crops = [planted_crops.crops[i] for i in rows]

    first = queued(neonate, images[:4])
    services.frames_process(frame_ids=[f.pk for f in first])
    cold = [Prediction.objects.get(frame=f) for f in first]
    # Cold start: no baseline yet; the frame goes to a nurse and says so.
    assert [p.baseline_used for p in cold] == [False] * 4
    assert {p.routed_to for p in cold} == {"nurse"}
    expected_cold, info = model_evaluate_p_pain(loaded, crops[:4], [subject] * 4, baseline_crops={subject: []})
    assert info["cold_start_subjects"] == [subject]
    assert [p.p_pain for p in cold] == pytest.approx(expected_cold.tolist(), abs=1e-5)
    row = NeonateBaseline.objects.get(neonate=neonate, model_version=version)
    assert row.n_frames == 4 and row.digest
    page = browser_for(nurse).get(reverse("triage:case_detail", args=[cold[0].case.pk])).content.decode()
    assert "No baseline yet" in page

    UnitSettings.objects.filter(unit=neonate.unit).update(threshold=0.99)  # the warm frames go to a nurse too
    second = queued(neonate, images[4:7])
    services.frames_process(frame_ids=[f.pk for f in second])
    warm = [Prediction.objects.get(frame=f) for f in second]
    assert all(p.baseline_used and p.baseline_id == row.pk for p in warm)
    page = browser_for(nurse).get(reverse("triage:case_detail", args=[warm[0].case.pk])).content.decode()
    assert "own resting face: the median of its last 4 frames" in page
    assert {p.baseline_digest for p in warm} == {row.digest} and {p.baseline_frames for p in warm} == {4}
    # The evaluation of the same frames against the frames the served baseline was built on.
    expected, _ = model_evaluate_p_pain(loaded, crops[4:7], [subject] * 3, baseline_crops={subject: crops[:4]})
    assert [p.p_pain for p in warm] == pytest.approx(expected.tolist(), abs=1e-5)
    assert not any(
        abs(a - b) < 1e-6
        for a, b in zip(
            expected, model_evaluate_p_pain(loaded, crops[4:7], [subject] * 3, baseline_crops={subject: []})[0]
        )
    )
    row.refresh_from_db()
    assert row.n_frames == WINDOW  # 7 frames seen, the window keeps the last 5

    # The model changes: the new version's baseline is rebuilt from the neonate's stored frames.
    other = services.model_version_register(bundle_path=bundle(trained, tmp_path, "b"), status="active")
    third = queued(neonate, images[7:8])
    services.frames_process(frame_ids=[f.pk for f in third])
    rebuilt = NeonateBaseline.objects.get(neonate=neonate)
    assert rebuilt.model_version == other and rebuilt.rebuilt_from_frames == WINDOW
    prediction = Prediction.objects.get(frame=third[0])
    assert prediction.model_version == other and prediction.baseline_used


@pytest.mark.parametrize(("kind", "architecture"), [("actions", "face_actions"), ("motion", "face_motion")])
def test_a_served_face_model_equals_its_evaluation(
    neonate, nurse, browser_for, planted_crops, mesh_model, monkeypatch, tmp_path, settings, kind, architecture
):
    """The facial-action and the facial-movement models: the worker's p_pain against the baby's
    stored baseline equals the evaluation's, and the nurse sees the actions against the baby's rest."""
    from inference.training.actions_model import train_actions_model

    monkeypatch.setenv("NEOPAIN_FACE_MESH_MODEL", str(mesh_model))
    settings.NEOPAIN_SALIENCY = False
    config = tr.TrainConfig(finetune="head", baseline="neonate", baseline_min_frames=MIN_FRAMES, baseline_window=WINDOW)
    trained = train_actions_model(planted_crops, config=config, kind=kind)
    assert trained.metrics["l2"] in (0.003, 0.03, 0.3, 3.0, 30.0)
    path = tmp_path / f"{kind}.pt"
    tr.bundle_write(trained, path, version=kind)
    version = services.model_version_register(bundle_path=path, status="active")
    assert version.architecture == architecture
    loaded = load_bundle(path)
    subject = planted_crops.subjects[-1]
    rows = [i for i, s in enumerate(planted_crops.subjects) if s == subject]
    images = [planted_crops.images[i] for i in rows]
    crops = [planted_crops.crops[i] for i in rows]
    first, second = queued(neonate, images[:4]), None
    services.frames_process(frame_ids=[f.pk for f in first])
    UnitSettings.objects.filter(unit=neonate.unit).update(threshold=0.99)  # every frame a nurse case
    second = queued(neonate, images[4:8])
    services.frames_process(frame_ids=[f.pk for f in second])
    warm = [Prediction.objects.get(frame=f) for f in second]
    assert all(p.baseline_used for p in warm)
    expected, _ = model_evaluate_p_pain(loaded, crops[4:8], [subject] * 4, baseline_crops={subject: crops[:4]})
    assert [p.p_pain for p in warm] == pytest.approx(expected.tolist(), abs=1e-5)
    # The nurse sees the measures that moved most against this baby's rest.
    readout = warm[0].baseline_actions
    assert len(readout) == 7 and abs(readout[0]["change"]) >= abs(readout[-1]["change"])
    page = browser_for(nurse).get(reverse("triage:case_detail", args=[warm[0].case.pk])).content.decode()
    pct = round(readout[0]["change"] * 100)
    assert f"{readout[0]['label']} {'+' if readout[0]['change'] >= 0 else ''}{pct}% vs this baby" in page
