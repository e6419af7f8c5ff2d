"""Training labels from nurse decisions, and the pseudonymous subject id of a neonate.

Subjects are pseudonymous: ``nb-`` + the first 12 hex digits of
HMAC-SHA256(key, "neonate:<pk>"), the key being ``NEOPAIN_PSEUDONYM_KEY`` (setting or
environment) or else ``SECRET_KEY``. Stable for a deployment, so LOSOCV and validation
splits keep a neonate's frames together, while folder names in an exported set carry no
MRN (PHI). Rotate the key and the ids change (the frames do not).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
from collections import Counter
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Prefetch

from annotations.models import FaceBoxCorrection, NipsAssessment
from annotations.observations import Kind, LabelSource, label_for
from triage.models import TriageCase, Unit


def subject_pseudonym(*, neonate_id: int) -> str:
    """A stable, non-reversible subject id for a neonate (no MRN in exported folder names)."""
    key = (
        getattr(settings, "NEOPAIN_PSEUDONYM_KEY", "")
        or os.environ.get("NEOPAIN_PSEUDONYM_KEY", "")
        or settings.SECRET_KEY
    )
    digest = hmac.new(str(key).encode(), f"neonate:{neonate_id}".encode(), hashlib.sha256).hexdigest()
    return f"nb-{digest[:12]}"


@dataclass(frozen=True)
class NurseLabel:
    """One usable training label: the case's frame, its crop box and the nurses' agreed verdict."""

    case_id: int
    frame_id: int
    neonate_id: int
    pain: bool
    box: tuple[int, int, int, int]
    box_source: str
    n_assessments: int
    origin: str = "uncertain"
    methods: str = ""
    """How the labelling assessments observed the baby (e.g. ``cot``, ``cot+unrecorded``)."""

    @property
    def unbiased(self) -> bool:
        """An audit label: a random automatic verdict, not chosen by the model's own uncertainty."""
        return self.origin == "audit"


def label_origin(case: TriageCase, n_assessments: int) -> str:
    """Why a nurse scored this frame: ``audit`` (a random automatic verdict, scored blind),
    ``double-scored`` (a nurse-routed case two nurses scored blind) or ``uncertain`` (nurse-routed).

    Only ``audit`` labels are a random sample of the frames the model decides by itself; the others
    were selected by the model's low confidence, which biases a calibration set built from them.
    """
    if case.is_audit:
        return "audit"
    return "double-scored" if n_assessments > 1 else "uncertain"


def case_label(case: TriageCase, source: LabelSource = LabelSource.NIPS_RULE) -> tuple[bool | None, str]:
    """(label, reason when unusable) from a decided case's assessments, under a label ``source``.

    ``nips_rule`` (default): the pain verdict of the unit's NIPS rule in force when she scored,
    from complete observations only (all six items observed): a face-only or partial review
    never gives one. ``face_item``: the facial expression item (grimace = pain). ``nurse_call``:
    the nurse's own pain / no pain call. Unable-to-assess scores give none; a case with no label
    left is ``no_<source>`` (``unable_to_assess`` when every score was unable); two scorers who
    disagree make the case ``disagreement`` (excluded: the model should not be taught a label
    the nurses themselves did not agree on).
    """
    source = LabelSource(source)
    if case.status != TriageCase.Status.DECIDED:
        return None, "undecided"
    assessments = list(case.assessments.all())
    if assessments and all(a.unable_to_assess for a in assessments):
        return None, "unable_to_assess"
    verdicts = [v for v in (assessment_label(a, source) for a in assessments) if v is not None]
    if not verdicts:
        return None, f"no_{source.value}"
    if len(set(verdicts)) > 1:
        return None, "disagreement"
    return bool(verdicts[0]), ""


def assessment_label(assessment: NipsAssessment, source: LabelSource) -> bool | None:
    """The label one assessment gives under ``source`` (:func:`annotations.observations.label_for`)."""
    return label_for(
        source,
        kind=assessment.kind,
        face=assessment.face,
        pain_by_rule=assessment.pain if assessment.kind == Kind.NIPS else None,
        nurse_call=assessment.nurse_call,
        unable=assessment.unable_to_assess,
    )


def label_source_counts(*, unit: Unit | None = None) -> dict[str, int]:
    """How many usable labels (decided cases, before the one-per-frame and no-face checks) each source gives."""
    cases = _decided_cases(unit)
    counts = dict.fromkeys((s.value for s in LabelSource), 0)
    for case in cases:
        for source in LabelSource:
            if not case_label(case, source)[1]:
                counts[source.value] += 1
    return counts


def _decided_cases(unit: Unit | None):
    cases = (
        TriageCase.objects.filter(status=TriageCase.Status.DECIDED)
        .select_related("prediction__frame")
        .prefetch_related(Prefetch("assessments", queryset=NipsAssessment.objects.order_by("created_at", "id")))
        .order_by("-decided_at", "-id")
    )
    return cases.filter(unit=unit) if unit is not None else cases


def nurse_labels(
    *, unit: Unit | None = None, source: LabelSource = LabelSource.NIPS_RULE
) -> tuple[list[NurseLabel], Counter]:
    """Usable labels under ``source`` (one per frame, the latest decided case) and a count of exclusions by reason."""
    from inference.detect import DEFAULT_MARGIN
    from inference.preprocess import expand_box

    cases = (
        TriageCase.objects.select_related("prediction__frame")
        .prefetch_related(Prefetch("assessments", queryset=NipsAssessment.objects.order_by("created_at", "id")))
        .order_by("-decided_at", "-id")
    )
    if unit is not None:
        cases = cases.filter(unit=unit)
    corrections: dict[int, FaceBoxCorrection] = {}
    frame_ids = cases.values_list("prediction__frame_id", flat=True)
    for correction in FaceBoxCorrection.objects.filter(frame_id__in=frame_ids).order_by("created_at", "id"):
        corrections[correction.frame_id] = correction  # latest wins
    excluded: Counter = Counter()
    labels: list[NurseLabel] = []
    seen_frames: set[int] = set()
    for case in cases:
        pain, reason = case_label(case, source)
        frame = case.prediction.frame
        if reason:
            excluded[reason] += 1
            continue
        if frame.pk in seen_frames:
            excluded["duplicate_frame"] += 1
            continue
        seen_frames.add(frame.pk)
        correction = corrections.get(frame.pk)
        if correction is not None and correction.no_face:
            excluded["nurse_marked_no_face"] += 1
            continue
        if correction is not None:
            # Nurses draw the face itself; serving crops the detector box grown by the margin.
            box = expand_box(
                (correction.x, correction.y, correction.w, correction.h), DEFAULT_MARGIN, (frame.width, frame.height)
            )
            box_source = "nurse_correction"
        else:
            box = tuple(case.prediction.box)
            box_source = "prediction"
        labels.append(
            NurseLabel(
                case_id=case.pk,
                frame_id=frame.pk,
                neonate_id=frame.neonate_id,
                pain=bool(pain),
                box=tuple(int(v) for v in box),  # type: ignore[arg-type]
                box_source=box_source,
                n_assessments=len(case.assessments.all()),
                origin=label_origin(case, len(case.assessments.all())),
                methods=_methods(case, source),
            )
        )
    return labels, excluded


def _methods(case: TriageCase, source: LabelSource) -> str:
    found = {a.method for a in case.assessments.all() if assessment_label(a, source) is not None}
    return "+".join(sorted(found))


def labels_since(*, unit: Unit, since: dt.datetime | None) -> int:
    """Decided cases of ``unit`` with at least one usable nurse verdict, decided after ``since``."""
    qs = TriageCase.objects.filter(
        unit=unit, status=TriageCase.Status.DECIDED, assessments__pain__isnull=False
    ).distinct()
    if since is not None:
        qs = qs.filter(decided_at__gt=since)
    return qs.count()
