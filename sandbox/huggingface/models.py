"""State of the Hugging Face Hub stand-in: repos, commits, the files of each commit, LFS objects.

File contents live on disk, content-addressed by sha256 under settings.SANDBOX_HF_ROOT (see
sandbox.huggingface.hub); the rows here only describe them. Every commit keeps its own full
file list, so any past commit can still be resolved by its oid, as on the real Hub.
"""

from __future__ import annotations

from django.db import models


class HubRepo(models.Model):
    namespace = models.CharField(max_length=96)
    name = models.CharField(max_length=96)
    private = models.BooleanField(default=False)
    head_oid = models.CharField(max_length=40, help_text="The commit `main` points at.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Hub repository"
        verbose_name_plural = "Hub repositories"
        constraints = [
            models.UniqueConstraint(fields=["namespace", "name"], name="sandbox_hf_repo_unique_id")
        ]
        ordering = ["namespace", "name"]

    def __str__(self) -> str:
        return self.repo_id

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"


class HubCommit(models.Model):
    repo = models.ForeignKey(HubRepo, on_delete=models.CASCADE, related_name="commits")
    oid = models.CharField(max_length=40)
    parent_oid = models.CharField(max_length=40, blank=True)
    summary = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["repo", "oid"], name="sandbox_hf_commit_unique_oid")]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.oid[:8]} {self.summary}"


class HubFile(models.Model):
    """One file as it is in one commit (a commit lists every file of its tree)."""

    commit = models.ForeignKey(HubCommit, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1000)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, help_text="Names the blob on disk; the LFS oid for LFS files.")
    git_oid = models.CharField(
        max_length=40, help_text="git blob sha1 of the content (of the pointer for LFS)."
    )
    lfs = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["commit", "path"], name="sandbox_hf_file_unique_path")]
        ordering = ["path"]

    def __str__(self) -> str:
        return self.path


class HubLfsObject(models.Model):
    """A large file uploaded through the git-lfs batch API (shared by all repos, as storage dedupes)."""

    oid = models.CharField(max_length=64, unique=True)
    size = models.BigIntegerField()
    verified = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "Hub LFS object"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.oid[:12]} ({self.size} bytes)"
