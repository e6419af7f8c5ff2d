"""Issue, rotate, list or revoke a user's API tokens from the command line (the key is printed once).

``neopain_token camera-bed-1``            a new token beside the live ones
``neopain_token --rotate camera-bed-1``   revoke the live ones, print one new key ("lost the token")
``neopain_token --revoke camera-bed-1``   revoke every live token of the user
``neopain_token --list camera-bed-1``     created / last used / expires / state, never the key
Every change is audited (actor ``manage.py``).
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from triage import services
from triage.models import ApiToken, User

ACTOR = "manage.py"


class Command(BaseCommand):
    help = "Issue (shown once), rotate, list or revoke a user's hashed, expiring API tokens."

    def add_arguments(self, parser):
        parser.add_argument("username")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("-r", "--rotate", action="store_true", help="Revoke the live tokens and issue a new one.")
        action.add_argument("--revoke", action="store_true", help="Revoke every live token of the user.")
        action.add_argument("--list", action="store_true", help="List the user's tokens (never their keys).")
        parser.add_argument("--days", type=float, help="Lifetime of the new token (default: the unit's setting).")

    def handle(self, *args, **options):
        user = User.objects.filter(username=options["username"]).select_related("unit").first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        if options["list"]:
            return self._list(user)
        if options["revoke"]:
            live = list(ApiToken.objects.filter(user=user, revoked_at__isnull=True).select_related("user"))
            for token in live:
                services.api_token_revoke(token=token, actor_username=ACTOR)
            self.stdout.write(f"Revoked {len(live)} token(s) of {user.username}.")
            return None
        expires_at = timezone.now() + timedelta(days=options["days"]) if options["days"] else None
        if options["rotate"]:
            issued = services.api_token_rotate(user=user, actor_username=ACTOR, expires_at=expires_at)
        else:
            issued = services.api_token_create(user=user, actor_username=ACTOR, expires_at=expires_at)
        self.stdout.write(
            f"Token for {user.username} (expires {issued.token.expires_at:%Y-%m-%d %H:%M} UTC), shown only now:\n"
            f"{issued.key}"
        )
        return None

    def _list(self, user: User) -> None:
        tokens = ApiToken.objects.filter(user=user)
        if not tokens:
            self.stdout.write(f"{user.username} has no API tokens.")
        for token in tokens:
            used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
            self.stdout.write(
                f"{token.prefix}…  created {token.created_at:%Y-%m-%d %H:%M}  last used {used}  "
                f"expires {token.expires_at:%Y-%m-%d %H:%M}  {token.state()}"
            )
