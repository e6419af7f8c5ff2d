"""``drf_create_token USER [-r]``: the old DRF command, kept for runbooks; it is ``neopain_token`` now."""

from triage.management.commands.neopain_token import Command as NeoPainTokenCommand


class Command(NeoPainTokenCommand):
    help = "Alias of neopain_token (hashed, expiring tokens): issue, or rotate with -r."
