"""The Hub stand-in's routes, mounted at /sandbox/hf/ (settings.HF_ENDPOINT in sandbox mode).

API routes come first so a repo namespace can never shadow them.
"""

from django.urls import path

from sandbox.huggingface import views

app_name = "sandbox_hf"

_repo = "<str:namespace>/<str:name>"

urlpatterns = [
    path("", views.root, name="root"),
    path("api/whoami-v2", views.whoami, name="whoami"),
    path("api/repos/create", views.repos_create, name="repos_create"),
    path("api/repos/delete", views.repos_delete, name="repos_delete"),
    path("api/validate-yaml", views.validate_yaml, name="validate_yaml"),
    path(f"api/models/{_repo}/preupload/<str:revision>", views.preupload, name="preupload"),
    path(f"api/models/{_repo}/commit/<str:revision>", views.commit, name="commit"),
    path(f"api/models/{_repo}/settings", views.repo_settings, name="repo_settings"),
    path(f"api/models/{_repo}/xet-<str:kind>-token/<str:revision>", views.xet_token, name="xet_token"),
    path(f"api/models/{_repo}/revision/<str:revision>", views.repo_info, name="repo_info_revision"),
    path(f"api/models/{_repo}", views.repo_info, name="repo_info"),
    path("lfs-upload/<str:token>", views.lfs_upload, name="lfs_upload"),
    path(f"{_repo}.git/info/lfs/objects/batch", views.lfs_batch, name="lfs_batch"),
    path(f"{_repo}.git/info/lfs/objects/verify", views.lfs_verify, name="lfs_verify"),
    path(f"{_repo}/resolve/<str:revision>/<path:path>", views.resolve, name="resolve"),
]
