"""OpenAPI schema generation tweaks (drf-spectacular)."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class AutoSchema(SpectacularAutoSchema):
    """Names nested serializers after their view, so every ``InputSerializer`` gets its own component.

    ``FrameListCreateApi.InputSerializer`` becomes ``FrameListCreateInput`` instead of every view's
    ``Input`` colliding into one component.
    """

    def get_serializer_name(self, serializer, direction):
        cls = serializer.__class__
        parts = cls.__qualname__.split(".")
        if len(parts) >= 2 and "<locals>" not in parts:
            outer = parts[-2]
            for suffix in ("Api", "View", "ViewSet"):
                if outer.endswith(suffix):
                    outer = outer[: -len(suffix)]
                    break
            inner = parts[-1]
            if inner.endswith("Serializer"):
                inner = inner[: -len("Serializer")]
            return f"{outer}{inner}"
        return super().get_serializer_name(serializer, direction)
