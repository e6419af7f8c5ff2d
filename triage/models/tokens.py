"""API credentials: hashed tokens that expire and can be revoked (issue 18).

The database holds only a lookup prefix and the SHA-256 of the whole key: a leaked row is not a
working credential. The key itself is shown once, when it is made. SHA-256 without a salt or a
slow hash is enough here because keys are 256-bit random strings, not passwords a person chose.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.db import models
from django.utils import timezone

# Characters of the key stored in clear to find its row (the rest is only compared as a digest).
TOKEN_PREFIX_LENGTH = 12


def token_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiToken(models.Model):
    class Kind(models.TextChoices):
        DEVICE = "device", "Bedside device"
        PERSON = "person", "Person"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    prefix = models.CharField(max_length=TOKEN_PREFIX_LENGTH, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Why it ended: "revoked" by a person, "rotated" (replaced by a newer key), "migrated" keys keep "".
    revoked_reason = models.CharField(max_length=20, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["user", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    def matches(self, key: str) -> bool:
        return hmac.compare_digest(self.digest, token_digest(key))

    def state(self, now=None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= (now or timezone.now()):
            return "expired"
        return "active"

    @property
    def days_left(self) -> int:
        """Whole days until it expires (0 on its last day or after): the devices page flags < 30."""
        return max(0, (self.expires_at - timezone.now()).days)

    @property
    def is_active(self) -> bool:
        return self.state() == "active"
