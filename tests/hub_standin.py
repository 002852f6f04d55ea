"""A file-backed stand-in for huggingface_hub's `HfFileSystem`, for `hf://` inputs without the
hub: a local folder laid out as `<root>/datasets/<owner>/<name>/<commit>/<files>`, with
`refs/<branch>` files holding the commit a branch points at. It answers what corpusmill asks
the real filesystem (`resolve_path`, `_api.repo_info(...).sha`, listing, opening) and pickles
to Ray workers like any fsspec filesystem. Tests swap it in for `jobs.hub.hub_filesystem`."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import fsspec
from fsspec.implementations.local import LocalFileSystem
from huggingface_hub.hf_file_system import HfFileSystemResolvedRepositoryPath


class LocalHub(fsspec.AbstractFileSystem):
    protocol = "hf"

    def __init__(self, root, **kwargs):
        super().__init__(root, **kwargs)
        self.root = str(root)
        self._local = LocalFileSystem()
        self._api = SimpleNamespace(repo_info=self._repo_info)

    # --- what corpusmill's hub input asks -----------------------------------------------
    def resolve_path(self, path: str, revision: str | None = None):
        kind, owner, name, revision_in_path, sub = self._parts(path)
        if not os.path.isdir(os.path.join(self.root, kind, owner, name)):
            raise FileNotFoundError(f"no repository {owner}/{name}")
        return HfFileSystemResolvedRepositoryPath(
            "dataset", f"{owner}/{name}", revision or revision_in_path or "main", sub)

    def _repo_info(self, repo_id: str, repo_type: str = "dataset", revision: str = "main"):
        repo = Path(self.root, "datasets", repo_id)
        ref = repo / "refs" / revision
        sha = ref.read_text().strip() if ref.is_file() else revision
        if not (repo / sha).is_dir():
            raise FileNotFoundError(f"no revision {revision} of {repo_id}")
        return SimpleNamespace(sha=sha)

    # --- fsspec ---------------------------------------------------------------------------
    def _parts(self, path: str):
        path = self._strip_protocol(path).strip("/")
        kind, owner, rest = path.split("/", 2)
        name_rev, _, sub = rest.partition("/")
        name, _, revision = name_rev.partition("@")
        return kind, owner, name, revision, sub

    def _to_local(self, path: str) -> str:
        kind, owner, name, revision, sub = self._parts(path)
        return os.path.join(self.root, kind, owner, name, revision, sub).rstrip("/")

    def _to_hub(self, local: str, path: str) -> str:
        kind, owner, name, revision, _ = self._parts(path)
        base = os.path.join(self.root, kind, owner, name, revision)
        rel = os.path.relpath(local, base)
        return f"{kind}/{owner}/{name}@{revision}" + ("" if rel == "." else f"/{rel}")

    def ls(self, path, detail=True, **kwargs):
        entries = self._local.ls(self._to_local(path), detail=True)
        out = [{**e, "name": self._to_hub(e["name"], path)} for e in entries]
        return out if detail else [e["name"] for e in out]

    def info(self, path, **kwargs):
        entry = self._local.info(self._to_local(path))
        return {**entry, "name": self._to_hub(entry["name"], path)}

    def _open(self, path, mode="rb", **kwargs):
        return self._local._open(self._to_local(path), mode)


def publish(root: Path, repo: str, commit: str, files: dict[str, Path],
            branch: str = "main") -> None:
    """Put `files` (path in repo -> local file) into `repo` at `commit`, and point `branch`
    at it."""
    base = root / "datasets" / repo
    for name, source in files.items():
        target = base / commit / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / branch).write_text(commit)
