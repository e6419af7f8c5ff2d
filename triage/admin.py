"""Django admin: units (with their settings shown), neonates, devices, users with role and unit,
model versions, and a read-only audit log. Triage policy is edited on the unit settings page, where
every change is validated and audited; here it is shown read-only."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.urls import reverse
from django.utils.html import format_html

from triage.models import (
    Alert,
    AuditEvent,
    Device,
    ExternalIdentity,
    ModelVersion,
    Neonate,
    TriageCase,
    Unit,
    UnitSettings,
    User,
)
from triage.services import UNIT_SETTINGS_EDITABLE, audit_record


class UnitSettingsInline(admin.StackedInline):
    model = UnitSettings
    can_delete = False
    extra = 0
    max_num = 1
    # Every editable policy field, shown read-only: edits go through the unit settings page (validated, audited).
    readonly_fields = [*UNIT_SETTINGS_EDITABLE, "updated_at", "edit_link"]
    fields = readonly_fields

    @admin.display(description="Edit")
    def edit_link(self, obj):
        return format_html(
            '<a href="{}?unit={}">Edit on the unit settings page (audited)</a>',
            reverse("triage:unit_settings"),
            obj.unit.code,
        )

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Unit)
class UnitAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "created_at"]
    search_fields = ["name", "code"]
    prepopulated_fields = {"code": ["name"]}
    inlines = [UnitSettingsInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        UnitSettings.objects.get_or_create(unit=obj)
        audit_record(
            action="unit.changed" if change else "unit.created",
            actor=request.user,
            unit=obj,
            obj=obj,
            after={"name": obj.name, "code": obj.code},
            request=request,
        )


@admin.register(Neonate)
class NeonateAdmin(admin.ModelAdmin):
    list_display = ["mrn", "bed", "unit", "gestational_age_weeks", "active", "created_at"]
    list_filter = ["unit", "active"]
    search_fields = ["mrn", "bed"]


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = ["name", "unit", "user", "active", "last_seen_at"]
    list_filter = ["unit", "active"]
    search_fields = ["name"]
    raw_id_fields = ["user"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "first_name", "last_name", "role", "unit", "is_active", "is_staff"]
    list_filter = ["role", "unit", "is_active", "is_staff", "is_superuser"]
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Role and unit", {"fields": ("role", "unit", "is_charge_nurse")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {"classes": ("wide",), "fields": ("username", "usable_password", "password1", "password2", "role", "unit")},
        ),
    )

    # Defence in depth behind the superuser-only site: nobody else may touch these.
    PRIVILEGE_FIELDS = ("is_staff", "is_superuser", "groups", "user_permissions")

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields += [f for f in self.PRIVILEGE_FIELDS if f not in fields]
        return fields

    def save_model(self, request, obj, form, change):
        before = None
        if change:
            old = (
                User.objects.filter(pk=obj.pk)
                .values("role", "unit_id", "is_active", "is_staff", "is_superuser")
                .first()
            )
            before = old
        super().save_model(request, obj, form, change)
        after = {
            "role": obj.role,
            "unit_id": obj.unit_id,
            "is_active": obj.is_active,
            "is_staff": obj.is_staff,
            "is_superuser": obj.is_superuser,
        }
        if before != after:
            audit_record(
                action="user.changed" if change else "user.created",
                actor=request.user,
                unit=obj.unit,
                obj=obj,
                before=before,
                after={**after, "username": obj.username},
                request=request,
            )


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Registration and activation go through the audited services (CLI / API); here they are shown."""

    list_display = ["label", "kind", "unit", "status", "is_bootstrap", "backbone", "created_at", "activated_at"]
    list_filter = ["kind", "status", "unit", "is_bootstrap"]
    search_fields = ["name", "version", "sha256"]
    readonly_fields = [f.name for f in ModelVersion._meta.fields]

    def has_add_permission(self, request):
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Append-only: no add, change or delete here (and the database refuses them too)."""

    list_display = ["created_at", "actor_username", "action", "object_type", "object_id", "unit", "ip"]
    list_filter = ["action", "unit"]
    search_fields = ["actor_username", "action", "object_type", "object_id"]
    date_hierarchy = "created_at"
    actions = None


@admin.register(TriageCase)
class TriageCaseAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "unit",
        "neonate",
        "status",
        "confidence",
        "claimed_by",
        "assessments_required",
        "created_at",
        "decided_at",
    ]
    list_filter = ["unit", "status"]


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "unit",
        "neonate",
        "source",
        "created_at",
        "suppressed_count",
        "acknowledged_at",
        "acknowledged_by",
    ]
    list_filter = ["unit", "source"]


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(admin.ModelAdmin):
    """Accounts at the identity provider. Adding one by hand links a person's provider account to an
    existing NeoPain account (single sign-on never matches accounts by name or e-mail)."""

    list_display = ["subject", "issuer", "user", "created_at", "last_login_at"]
    search_fields = ["subject", "user__username", "user__email"]
    list_select_related = ["user"]
    raw_id_fields = ["user"]
    readonly_fields = ["created_at", "last_login_at"]
