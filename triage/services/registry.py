"""The model registry: register classifier bundles and detector weights, activate one per unit."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from triage.models import ModelVersion, Unit, User
from triage.services.audit import audit_record
from triage.services.sweeper import WAITING_FOR_MODEL, frames_sweep

logger = logging.getLogger(__name__)


def model_version_can_manage(*, user, model_version_unit: Unit | None) -> bool:
    """ML engineers and superusers manage models; a unit admin only her own unit's models."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser or user.is_ml_engineer:
        return True
    return bool(user.is_unit_admin and model_version_unit is not None and user.unit_id == model_version_unit.pk)


def _bundle_description(*, path, kind: str) -> tuple[str, dict[str, Any]]:
    """(sha256, metadata) of a classifier bundle or detector weights file (no model is built)."""
    from django.core.exceptions import ValidationError

    from inference import bundle as bundle_lib

    if kind == "detector":
        from inference.weights_check import UnsafeWeights, detector_weights_check

        try:
            sha256 = bundle_lib.sha256_file(path)
            # A YOLO .pt is a pickle that ultralytics unpickles on activation: refuse one that could run code.
            weights_format = detector_weights_check(path)
        except OSError as exc:
            raise ValidationError({"bundle_path": [f"Cannot read {path}: {exc.strerror or exc}"]}) from exc
        except UnsafeWeights as exc:
            raise ValidationError({"bundle_path": [f"Refused detector weights: {exc}"]}) from exc
        return sha256, {
            "name": path.stem,
            "version": sha256[:12],
            "backbone": "",
            "architecture": "detector",
            "format": weights_format,
        }
    try:
        payload, sha256 = bundle_lib.read_bundle(path)
    except bundle_lib.BundleError as exc:
        raise ValidationError({"bundle_path": [f"Not a valid model bundle: {exc}"]}) from exc
    return sha256, dict(payload["metadata"])


def _json_safe(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def model_version_register(
    *,
    bundle_path,
    kind: str = "classifier",
    unit: Unit | None = None,
    actor: User | None = None,
    status: str = "candidate",
    metrics: dict | None = None,
) -> ModelVersion:
    """Register a model bundle (or detector weights) by its sha256; idempotent on (kind, sha256, unit).

    Metadata (name, version, backbone, architecture, is_bootstrap, metrics) comes from the
    bundle itself. ``status='active'`` registers and activates in one go.
    """
    from pathlib import Path

    from django.core.exceptions import ValidationError

    if kind not in ModelVersion.Kind.values:
        raise ValidationError({"kind": [f"Must be one of {', '.join(ModelVersion.Kind.values)}."]})
    if status not in ModelVersion.Status.values:
        raise ValidationError({"status": [f"Must be one of {', '.join(ModelVersion.Status.values)}."]})
    path = Path(bundle_path).expanduser().resolve()
    if not path.is_file():
        raise ValidationError({"bundle_path": [f"No such file: {path}"]})
    sha256, metadata = _bundle_description(path=path, kind=kind)
    with transaction.atomic():
        existing = ModelVersion.objects.select_for_update().filter(kind=kind, sha256=sha256, unit=unit).first()
        if existing is not None:
            changed = []
            if metrics and existing.metrics != _json_safe(metrics):
                existing.metrics = _json_safe(metrics)
                changed.append("metrics")
            if str(existing.bundle_path) != str(path) and not Path(existing.bundle_path).is_file():
                # Same weights moved: follow the file so the worker can still load it.
                existing.bundle_path = str(path)
                changed.append("bundle_path")
            if changed:
                existing.save(update_fields=changed)
            model_version = existing
            created = False
        else:
            model_version = ModelVersion.objects.create(
                kind=kind,
                unit=unit,
                name=str(metadata.get("name") or path.stem)[:120],
                version=str(metadata.get("version") or sha256[:12])[:40],
                bundle_path=str(path),
                sha256=sha256,
                backbone=str(metadata.get("backbone") or "")[:60],
                architecture=str(metadata.get("architecture") or "")[:40],
                is_bootstrap=bool(metadata.get("is_bootstrap", False)),
                metadata=_json_safe({k: v for k, v in metadata.items() if k != "metrics"}),
                metrics=_json_safe(metrics if metrics is not None else metadata.get("metrics") or {}),
                status=ModelVersion.Status.RETIRED
                if status == ModelVersion.Status.RETIRED
                else ModelVersion.Status.CANDIDATE,
                created_by=actor if actor is not None and actor.is_authenticated else None,
            )
            created = True
            audit_record(
                action="model.registered",
                actor=actor,
                unit=unit,
                obj=model_version,
                after={
                    "kind": kind,
                    "name": model_version.name,
                    "version": model_version.version,
                    "sha256": sha256,
                    "bundle_path": str(path),
                },
            )
    logger.info(
        "model %s %s (%s, sha256 %s)",
        model_version.label,
        "registered" if created else "already registered",
        kind,
        sha256[:12],
    )
    if status == ModelVersion.Status.ACTIVE and model_version.status != ModelVersion.Status.ACTIVE:
        model_version = model_version_activate(model_version=model_version, actor=actor)
    return model_version


@transaction.atomic
def model_version_activate(*, model_version: ModelVersion, actor: User | None, request=None) -> ModelVersion:
    """Make ``model_version`` the active one of its kind and unit, retiring the previous one.

    Refuses (ValidationError) a bundle whose file is missing or whose hash no longer matches its
    registration. Workers resolve the active model per batch, so they switch on their next batch.
    """
    from pathlib import Path

    from django.core.exceptions import PermissionDenied, ValidationError

    from inference import bundle as bundle_lib

    if actor is not None and not model_version_can_manage(user=actor, model_version_unit=model_version.unit):
        raise PermissionDenied("Only ML engineers may activate models.")
    model_version = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
    if model_version.status == ModelVersion.Status.ACTIVE:
        return model_version
    path = Path(model_version.bundle_path)
    try:
        actual = bundle_lib.sha256_file(path)
    except OSError as exc:
        raise ValidationError(
            {"bundle_path": [f"Cannot read the registered file {path}: {exc.strerror or exc}"]}
        ) from exc
    if actual != model_version.sha256:
        raise ValidationError(
            {
                "bundle_path": [
                    f"{path} has sha256 {actual[:12]}..., not the registered {model_version.sha256[:12]}...; "
                    "register the new file instead."
                ]
            }
        )
    previous = list(
        ModelVersion.objects.select_for_update().filter(
            kind=model_version.kind, unit=model_version.unit, status=ModelVersion.Status.ACTIVE
        )
    )
    for old in previous:
        old.status = ModelVersion.Status.RETIRED
        old.save(update_fields=["status"])
    model_version.status = ModelVersion.Status.ACTIVE
    model_version.activated_at = timezone.now()
    model_version.activated_by = actor if actor is not None and actor.is_authenticated else None
    model_version.save(update_fields=["status", "activated_at", "activated_by"])
    audit_record(
        action="model.activated",
        actor=actor,
        unit=model_version.unit,
        obj=model_version,
        before={"active": [{"id": old.pk, "label": old.label, "sha256": old.sha256} for old in previous]},
        after={
            "active": {
                "id": model_version.pk,
                "label": model_version.label,
                "sha256": model_version.sha256,
                "kind": model_version.kind,
            }
        },
        request=request,
    )
    logger.info(
        "model %s activated (%s, unit %s)",
        model_version.label,
        model_version.kind,
        model_version.unit.code if model_version.unit else "all",
    )
    # Frames parked while no model was active can go now.
    transaction.on_commit(lambda: frames_sweep(queued_reason_prefix=WAITING_FOR_MODEL))
    return model_version
