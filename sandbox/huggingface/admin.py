from __future__ import annotations

from django.contrib import admin

from sandbox.huggingface.models import HubCommit, HubFile, HubLfsObject, HubRepo


class HubCommitInline(admin.TabularInline):
    model = HubCommit
    fields = ("oid", "summary", "parent_oid", "created_at")
    readonly_fields = fields
    extra = 0
    show_change_link = True


@admin.register(HubRepo)
class HubRepoAdmin(admin.ModelAdmin):
    list_display = ("namespace", "name", "private", "head_oid", "updated_at")
    list_filter = ("private", "namespace")
    search_fields = ("namespace", "name")
    readonly_fields = ("head_oid", "created_at", "updated_at")
    inlines = [HubCommitInline]


class HubFileInline(admin.TabularInline):
    model = HubFile
    fields = ("path", "size", "lfs", "sha256", "git_oid")
    readonly_fields = fields
    extra = 0


@admin.register(HubCommit)
class HubCommitAdmin(admin.ModelAdmin):
    list_display = ("oid", "repo", "summary", "created_at")
    search_fields = ("oid", "summary", "repo__name")
    list_select_related = ("repo",)
    inlines = [HubFileInline]


@admin.register(HubLfsObject)
class HubLfsObjectAdmin(admin.ModelAdmin):
    list_display = ("oid", "size", "verified", "created_at")
    list_filter = ("verified",)
    search_fields = ("oid",)
