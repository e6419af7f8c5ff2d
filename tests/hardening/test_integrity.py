"""Issue 6, Data integrity (lines 11-14): an append-only audit log, a spreadsheet-safe export, predictions
that say exactly what produced them, and model files that are never unpickled or swapped silently."""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import random
import shutil
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from hypothesis import given, settings
from hypothesis import strategies as st

from annotations.export import FORMULA_PREFIXES, export_lines, neutralise
from tests.factories import NipsAssessmentFactory, UserFactory, png_bytes
from tests.hardening.conftest import astronaut, encode
from tests.support import save_painnet_bundle, save_tiny_onnx
from tests.ui.conftest import make_case
from triage import services
from triage.models import AuditEvent, ModelVersion, Prediction

pytestmark = pytest.mark.django_db

ROOT = Path(django_settings.BASE_DIR)


# --- 11. the audit log is append-only -------------------------------------------------------------


@pytest.fixture
def event(nurse):
    return services.audit_record(
        action="case.claimed", actor=nurse, before={"status": "open"}, after={"status": "claimed"}
    )


def _unchanged(event) -> bool:
    row = AuditEvent.objects.get(pk=event.pk)
    return (row.action, row.before, row.after, row.actor_username) == (
        "case.claimed",
        {"status": "open"},
        {"status": "claimed"},
        "alice",
    )


def test_an_audit_row_cannot_be_changed_or_deleted_through_the_orm(event):
    event.action = "case.tampered"
    with pytest.raises(AuditEvent.AppendOnly):
        event.save()
    with pytest.raises(AuditEvent.AppendOnly):
        event.save(update_fields=["action"])
    with pytest.raises(AuditEvent.AppendOnly):
        event.delete()

    assert _unchanged(event)


@pytest.mark.parametrize("operation", ["update", "delete", "bulk_update", "raw_delete", "filtered_delete"])
def test_an_audit_row_cannot_be_changed_or_deleted_by_a_queryset(event, operation):
    queryset = AuditEvent.objects.all()
    # A savepoint: bulk_update() opens a non-savepoint atomic block that would doom the test's transaction.
    with pytest.raises(AuditEvent.AppendOnly), transaction.atomic():
        if operation == "update":
            queryset.update(action="case.tampered")
        elif operation == "delete":
            queryset.delete()
        elif operation == "bulk_update":
            event.action = "case.tampered"
            AuditEvent.objects.bulk_update([event], ["action"])
        elif operation == "raw_delete":
            queryset._raw_delete(using="default")
        else:
            AuditEvent.objects.filter(pk=event.pk).delete()

    assert _unchanged(event)


RAW_SQL = {
    "update": "UPDATE triage_auditevent SET action = 'case.tampered'",
    "delete": "DELETE FROM triage_auditevent",
    "update-one-column": "UPDATE triage_auditevent SET actor_username = 'mallory' WHERE id = %s",
}


@pytest.mark.parametrize("statement", RAW_SQL)
def test_the_database_refuses_raw_sql_updates_and_deletes(event, statement):
    sql = RAW_SQL[statement]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [event.pk] if "%s" in sql else None)

    assert _unchanged(event)


def test_the_database_refuses_truncate_on_postgresql(event):
    if connection.vendor != "postgresql":
        pytest.skip("TRUNCATE is PostgreSQL's; SQLite has only DELETE (refused above)")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE triage_auditevent")

    assert _unchanged(event)


def test_the_append_only_triggers_are_installed():
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'triage_auditevent'::regclass "
                "AND NOT tgisinternal AND tgenabled = 'O'"
            )
            names = {row[0] for row in cursor.fetchall()}
            assert names == {"triage_auditevent_append_only", "triage_auditevent_no_truncate"}
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'triage_auditevent'")
            assert {row[0] for row in cursor.fetchall()} == {
                "triage_auditevent_no_update",
                "triage_auditevent_no_delete",
            }


def test_inserting_still_works(nurse):
    before = AuditEvent.objects.count()
    services.audit_record(action="login", actor=nurse)

    assert AuditEvent.objects.count() == before + 1


def test_the_admin_offers_no_way_to_change_or_delete_audit_rows(event, browser_for):
    from django.contrib import admin

    superuser = UserFactory(username="root", role="unit_admin", unit=None, is_superuser=True, is_staff=True)
    client = browser_for(superuser)
    model_admin = admin.site._registry[AuditEvent]
    request = type("Request", (), {"user": superuser})()

    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, event)
    assert not model_admin.has_delete_permission(request, event)
    assert model_admin.get_actions(request) == {}
    assert client.get("/django-admin/triage/auditevent/").status_code == 200
    for url, data in [
        (f"/django-admin/triage/auditevent/{event.pk}/delete/", {"post": "yes"}),
        (f"/django-admin/triage/auditevent/{event.pk}/change/", {"action": "case.tampered"}),
        ("/django-admin/triage/auditevent/add/", {"action": "forged"}),
    ]:
        assert client.post(url, data).status_code == 403, url
    # The bulk "delete selected" action does not exist here: the list just renders again.
    client.post(
        "/django-admin/triage/auditevent/", {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
    )
    assert _unchanged(event)
    assert AuditEvent.objects.filter(action="forged").count() == 0


# --- 12. the CSV export is spreadsheet-safe ------------------------------------------------------

# Text a spreadsheet could mistake for a formula, or that stresses CSV quoting.
ALPHABET = st.sampled_from(list("=+-@\t\r\n,;\"' |!A1(){}:/\\éß漢\u202e0.5") + ["cmd", "SUM(", "HYPERLINK("])
TEXT = st.lists(ALPHABET, max_size=12).map("".join) | st.text(max_size=20)


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_neutralised_text_never_starts_with_a_formula_character(value):
    cell = neutralise(value)

    assert not cell.startswith(FORMULA_PREFIXES)
    assert cell == ("'" + value if value.startswith(FORMULA_PREFIXES) else value)


def _corpus(n: int, seed: int = 12) -> list[str]:
    """Seeded, generated notes: formula starts, separators, quotes, line breaks and non-ASCII."""
    rng = random.Random(seed)
    pieces = [
        "=",
        "+",
        "-",
        "@",
        "\t",
        "\r",
        "\n",
        ",",
        ";",
        '"',
        "'",
        " ",
        "|",
        "=1+1",
        "@SUM(A1)",
        "cmd|' /C calc'!A0",
        'HYPERLINK("http://x")',
        "Zoë",
        "漢字",
        "\u202e",
        "0.5",
        "grimace",
    ]
    notes = []
    for i in range(n):
        note = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        notes.append(note if i % 3 else rng.choice("=+-@\t\r") + note)
    return notes


def test_every_exported_cell_is_safe_and_notes_round_trip(client_for, nurse, neonate, model):
    from annotations.models import NipsAssessment

    notes = _corpus(60)
    scorers = [UserFactory(username=name, unit=nurse.unit) for name in ("-dash", "+plus", "@at", "=eq")]
    for i, note in enumerate(notes):
        case = make_case(neonate=neonate, model=model, age_minutes=600 - i, crop=False, status="decided")
        NipsAssessmentFactory(case=case, nurse=scorers[i % len(scorers)], note=note)

    response = client_for(nurse).get("/api/v1/assessments/export.csv")
    body = b"".join(response.streaming_content).decode("utf-8")
    rows = list(csv.reader(io.StringIO(body, newline="")))

    assert response.status_code == 200 and len(rows) == len(notes) + 1
    unsafe = [
        (r, c, cell) for r, row in enumerate(rows) for c, cell in enumerate(row) if cell.startswith(FORMULA_PREFIXES)
    ]
    assert unsafe == []
    by_id = {int(row[0]): row for row in rows[1:]}
    for assessment in NipsAssessment.objects.all():
        row = by_id[assessment.pk]
        assert row[19] == neutralise(assessment.note)  # commas, quotes and line breaks survive
        assert row[9] == "'" + assessment.nurse.username


def test_export_lines_quote_what_needs_quoting():
    line = next(iter(export_lines([]))).rstrip("\r\n")

    assert line.split(",")[0] == "assessment_id"
    buffer = io.StringIO()
    csv.writer(buffer).writerow([neutralise('a,"b"\nc')])
    assert next(csv.reader(io.StringIO(buffer.getvalue()))) == ['a,"b"\nc']


# --- 13. predictions say what produced them; re-scoring is repeatable ----------------------------


def test_the_provenance_fields_are_mandatory_in_the_schema():
    for name in ("model_version", "weights_sha256", "frame_sha256", "threshold"):
        field = Prediction._meta.get_field(name)
        assert not field.null, name
        assert not getattr(field, "blank", False), name


def _face_frame(neonate, seed: int) -> bytes:
    image = astronaut().copy()
    image.putpixel((seed % 256, 255), (seed % 256, 3, 5))
    return encode(image, "PNG")


def test_every_prediction_carries_model_weights_frame_hash_and_threshold(
    neonate, real_model, unit, enqueued, painnet_bundle, client_for, nurse
):
    services.unit_settings_update(unit=unit, actor=None, changes={"threshold": 0.8})
    frames = [
        services.frame_ingest(neonate=neonate, image_file=_face_frame(neonate, i), uploaded_by=None)[0]
        for i in range(3)
    ]

    services.frames_process(frame_ids=[f.pk for f in frames])

    weights = hashlib.sha256(painnet_bundle.read_bytes()).hexdigest()
    for frame in frames:
        frame.refresh_from_db()
        prediction = Prediction.objects.get(frame=frame)
        with frame.image.open("rb") as handle:
            stored = hashlib.sha256(handle.read()).hexdigest()
        assert frame.status == "done"
        assert prediction.model_version_id == real_model.pk
        assert prediction.weights_sha256 == real_model.sha256 == weights
        assert prediction.frame_sha256 == frame.sha256 == stored
        assert prediction.threshold == 0.8
        api = client_for(nurse).get(f"/api/v1/frames/{frame.pk}/").json()["prediction"]
        assert (api["model_version"], api["weights_sha256"], api["frame_sha256"], api["threshold"]) == (
            real_model.label,
            weights,
            stored,
            0.8,
        )


def test_re_scoring_the_same_frame_with_the_same_model_gives_the_same_result(
    neonate, real_model, enqueued, painnet_bundle
):
    from inference import bundle as bundle_lib
    from inference import pipeline as pipeline_lib

    data = _face_frame(neonate, 99)
    frame, _ = services.frame_ingest(neonate=neonate, image_file=data, uploaded_by=None)
    services.frames_process(frame_ids=[frame.pk])
    stored = Prediction.objects.get(frame=frame)

    again = pipeline_lib.get_pipeline(painnet_bundle, expected_sha256=real_model.sha256).run(data)
    bundle_lib.clear_cache()  # a fresh load, as in another worker process
    pipeline_lib._pipelines.clear()
    fresh = pipeline_lib.get_pipeline(painnet_bundle, expected_sha256=real_model.sha256).run(data)

    assert again.p_pain == fresh.p_pain == stored.p_pain
    assert again.box == fresh.box == tuple(stored.box)
    assert again.weights_sha256 == stored.weights_sha256


# --- 14. model files: weights only, and pinned by hash -------------------------------------------

SOURCE_DIRS = ("inference", "triage", "annotations", "neopain_site", "scripts", "tests")


def _python_files() -> list[Path]:
    files = [ROOT / "manage.py"]
    for folder in SOURCE_DIRS:
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _torch_load_aliases(tree) -> set[str]:
    aliases = {"torch.load", "torch.serialization.load"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.serialization"):
            aliases |= {a.asname or a.name for a in node.names if a.name == "load"}
        if isinstance(node, ast.Import):
            aliases |= {f"{a.asname}.load" for a in node.names if a.name == "torch" and a.asname}
    return aliases


def test_every_torch_load_uses_weights_only():
    calls, unsafe = 0, []
    for path in _python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        aliases = _torch_load_aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _dotted(node.func) in aliases:
                calls += 1
                flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    unsafe.append(f"{path.relative_to(ROOT)}:{node.lineno}")

    assert calls >= 3, "the scan found no torch.load calls: it is not looking at the code"
    assert unsafe == []


def test_nothing_unpickles_untrusted_data():
    """pickle, torch.jit and numpy's allow_pickle can all run code from a file."""
    risky = []
    for path in _python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            if name in ("pickle.load", "pickle.loads", "torch.jit.load", "dill.load", "joblib.load"):
                risky.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
            if any(k.arg == "allow_pickle" and getattr(k.value, "value", False) is True for k in node.keywords):
                risky.append(f"{path.relative_to(ROOT)}:{node.lineno} allow_pickle=True")

    assert risky == []


def test_a_bundle_that_runs_code_when_unpickled_is_refused_at_registration(tmp_path):
    import torch

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "neopain-model-bundle", "format_version": 1, "metadata": Payload(), "state_dict": {}}, evil)

    with pytest.raises(ValidationError, match="Not a valid model bundle"):
        services.model_version_register(bundle_path=evil, status="active")

    assert not marker.exists()
    assert ModelVersion.objects.count() == 0


@pytest.fixture
def swappable_model(db, painnet_bundle, tmp_path, settings):
    """A private copy of the real bundle, registered and active, that the test may overwrite."""
    settings.NEOPAIN_SALIENCY = False
    path = tmp_path / "painnet.pt"
    shutil.copyfile(painnet_bundle, path)
    return services.model_version_register(bundle_path=path, status="active")


def _swap_weights(path: Path) -> None:
    save_painnet_bundle(path, seed=7, name="painnet-hardening")


def test_a_bundle_whose_hash_differs_from_its_registration_is_refused(neonate, swappable_model, enqueued):
    frame, _ = services.frame_ingest(neonate=neonate, image_file=_face_frame(neonate, 5), uploaded_by=None)
    _swap_weights(Path(swappable_model.bundle_path))

    counts = services.frames_process(frame_ids=[frame.pk])

    frame.refresh_from_db()
    assert counts["failed"] == 1 and counts["done"] == 0
    assert frame.status == "failed"
    assert "cannot be used" in frame.reason and "sha256" in frame.reason
    assert Prediction.objects.count() == 0


def test_a_changed_bundle_cannot_be_activated(swappable_model, ml_engineer, client_for, painnet_bundle, tmp_path):
    path = tmp_path / "candidate.pt"
    shutil.copyfile(painnet_bundle, path)
    _swap_weights(path)
    candidate = services.model_version_register(bundle_path=path)
    path.write_bytes(path.read_bytes() + b"tampered")

    response = client_for(ml_engineer).post(f"/api/v1/models/{candidate.pk}/activate/")

    assert response.status_code == 400
    assert "sha256" in response.json()["detail"]
    candidate.refresh_from_db()
    assert candidate.status == "candidate"
    assert ModelVersion.objects.get(status="active").pk == swappable_model.pk


def test_a_swapped_detector_weights_file_is_refused(neonate, swappable_model, tmp_path, enqueued):
    """Detector weights (YOLO .pt files are pickles) are pinned by their registered hash too."""
    # Registration accepts only ONNX or an allow-listed checkpoint (issue 16): a tiny valid ONNX graph.
    weights = save_tiny_onnx(tmp_path / "yolo-face.onnx")
    detector = services.model_version_register(bundle_path=weights, kind="detector", status="active")
    weights.write_bytes(b"swapped after registration")
    frame, _ = services.frame_ingest(neonate=neonate, image_file=png_bytes(seed=8), uploaded_by=None)

    services.frames_process(frame_ids=[frame.pk])

    frame.refresh_from_db()
    assert frame.status == "failed"
    assert detector.sha256[:12] in frame.reason or "sha256" in frame.reason
    assert Prediction.objects.count() == 0
