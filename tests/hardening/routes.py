"""Every route the URL resolver knows, with its view class and methods: the access tests enumerate these
instead of a hand-written list, so a route added later is covered (or fails until it is given a row)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

HANDLER_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Route:
    route: str  # e.g. "api/v1/frames/<int:pk>/"
    name: str | None
    callback: object
    view_class: type | None

    @property
    def is_api(self) -> bool:
        return self.route.startswith("api/")

    @property
    def is_admin(self) -> bool:
        return self.route.startswith("django-admin/")

    @property
    def key(self) -> str:
        return self.name or self.route

    @property
    def kwargs(self) -> list[str]:
        return re.findall(r"<(?:\w+:)?(\w+)>", self.route)

    @property
    def methods(self) -> tuple[str, ...]:
        """HTTP methods the view implements (upper case); OPTIONS/HEAD are left to the caller."""
        if self.view_class is None:
            return ()
        return tuple(m.upper() for m in HANDLER_METHODS if hasattr(self.view_class, m))

    def path(self, **values) -> str:
        """The concrete path, each ``<converter:name>`` replaced by ``values[name]``.

        Regex routes (the admin's) get their first alternative, e.g. ``(?P<app_label>auth|triage)`` -> ``auth``.
        """
        route = (
            re.sub(
                r"\(\?P<(\w+)>([^)]*)\)",
                lambda m: str(values.get(m.group(1), m.group(2).split("|")[0].strip(".*") or "x")),
                self.route,
            )
            .replace("^", "")
            .replace("$", "")
        )
        missing = [k for k in re.findall(r"<(?:\w+:)?(\w+)>", route) if k not in values]
        if missing:
            raise KeyError(f"route {self.route!r} needs {missing}")
        return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(values[m.group(1)]), route)


def _walk(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            callback = pattern.callback
            view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
            yield Route(prefix + str(pattern.pattern), pattern.name, callback, view_class)


def all_routes() -> list[Route]:
    return list(_walk(get_resolver().url_patterns))


def api_routes() -> list[Route]:
    return [r for r in all_routes() if r.is_api]
