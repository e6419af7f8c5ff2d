"""Upload rate limits: per camera and per person, across the frame and clip endpoints (issue 16, item 6).

Thirty large PNGs from one camera made a real frame wait 10 s. Over the rate the API answers 429
with ``Retry-After`` (DRF's throttling). Rates are read from the settings on every request
(``NEOPAIN_UPLOAD_RATE_DEVICE`` / ``NEOPAIN_UPLOAD_RATE_USER``), the history lives in the
``throttle`` cache (Redis when configured; in the embedded default, each web process's memory).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import SimpleRateThrottle

from triage.models import Role

logger = logging.getLogger(__name__)


class _UploadThrottle(SimpleRateThrottle):
    rate_setting = ""

    def __init__(self):
        # DRF reads the rate once per instance; reading the setting here makes it a live setting.
        self.cache = caches["throttle"]
        super().__init__()

    def get_rate(self) -> str:
        return getattr(settings, self.rate_setting)

    def allow_request(self, request, view) -> bool:
        if request.method != "POST":  # listing and reading back are not uploads
            return True
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # redis-py and friends raise their own connection errors
            # Frames must still be stored while Redis is down (the sweeper queues them later):
            # the throttle fails open, as the sign-in throttle does.
            logger.warning("upload throttle unavailable (%s: %s): not throttling", type(exc).__name__, exc)
            return True

    def _applies_to(self, user) -> bool:
        raise NotImplementedError

    def get_cache_key(self, request, view) -> str | None:
        user = request.user
        if not (user and user.is_authenticated) or not self._applies_to(user):
            return None
        return self.cache_format % {"scope": self.scope, "ident": user.pk}


class UploadDeviceThrottle(_UploadThrottle):
    """Uploads by one camera account."""

    scope = "upload_device"
    rate_setting = "NEOPAIN_UPLOAD_RATE_DEVICE"

    def _applies_to(self, user) -> bool:
        return user.role == Role.DEVICE


class UploadUserThrottle(_UploadThrottle):
    """Uploads by one person with their own account (nurse, unit admin, superuser)."""

    scope = "upload_user"
    rate_setting = "NEOPAIN_UPLOAD_RATE_USER"

    def _applies_to(self, user) -> bool:
        return user.role != Role.DEVICE


UPLOAD_THROTTLES = [UploadDeviceThrottle, UploadUserThrottle]
