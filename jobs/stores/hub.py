"""Hugging Face hub repositories as input: `hf://datasets/owner/name[@revision]/path`, read
through huggingface_hub's `HfFileSystem` (fsspec) wrapped as a pyarrow filesystem, so the
rest of the job sees files as it does on disk or S3.

The revision (a branch, tag or commit; default `main`) is resolved once, at preflight, to the
commit it points at, and every file is listed and read at that commit (paths
`datasets/owner/name@<commit>/...`): a run never mixes two versions of a repository that
changes while it runs, Ray workers read exactly what the driver inspected, and the commit is
recorded in the manifest and in the output's provenance (`input` in the Parquet metadata and
the dataset card). File names in ids are relative to the path given, as for local input, so
ids stay the same from one commit to the next. Private and gated datasets take the usual
credentials (`HF_TOKEN`, or `huggingface-cli login`); `HF_ENDPOINT` points at a mirror."""
from __future__ import annotations

import pyarrow.fs as pafs

from corpusmill.errors import JobError

HUB_PREFIX = "hf://"
_USAGE = "give hf://datasets/OWNER/NAME[@REVISION]/PATH"


def is_hub_path(path: str) -> bool:
    return path.startswith(HUB_PREFIX)


def hub_filesystem():
    """The fsspec filesystem that serves `hf://` paths (credentials and endpoint from the
    environment, as huggingface_hub reads them)."""
    from huggingface_hub import HfFileSystem

    return HfFileSystem()


def open_hub(uri: str) -> tuple[pafs.FileSystem, str, dict]:
    """(pyarrow filesystem, root pinned to one commit, source record) for an `hf://` input."""
    hub = hub_filesystem()
    try:
        resolved = hub.resolve_path(uri)
    except (ValueError, NotImplementedError) as e:
        raise JobError(f"input {uri!r} is not a hub repository path ({e}); {_USAGE}") from None
    except FileNotFoundError as e:
        raise JobError(f"input {uri!r}: the hub has no such repository or revision ({e}); check "
                       f"the name and the revision after '@'; a private or gated dataset needs "
                       f"HF_TOKEN (or `huggingface-cli login`)") from None
    except Exception as e:  # noqa: BLE001 - offline mode, network, auth: all say the same
        raise _unreachable(uri, e) from None
    repo_type = getattr(resolved, "repo_type", None)
    if repo_type is None:
        raise JobError(f"input {uri!r} is a storage bucket, not a repository; {_USAGE}")
    try:
        # the filesystem's own client: the same endpoint and credentials as its reads
        commit = hub._api.repo_info(resolved.repo_id, repo_type=repo_type,
                                    revision=resolved.revision).sha
    except Exception as e:  # noqa: BLE001
        raise _unreachable(uri, e) from None
    from huggingface_hub import constants

    repo_root = f"{constants.REPO_TYPES_URL_PREFIXES.get(repo_type, '')}{resolved.repo_id}@{commit}"
    root = f"{repo_root}/{resolved.path_in_repo}".rstrip("/")
    source = {"hub": {"repo": resolved.repo_id, "repo_type": repo_type,
                      "revision": resolved.revision, "commit": commit}}
    return pafs.PyFileSystem(pafs.FSSpecHandler(hub)), root, source


def _unreachable(uri: str, error: Exception) -> JobError:
    return JobError(f"input {uri!r}: the Hugging Face hub could not be asked about it "
                    f"({type(error).__name__}: {error}). Check the network (HF_ENDPOINT for a "
                    f"mirror), unset HF_HUB_OFFLINE, and give HF_TOKEN for a private dataset")
