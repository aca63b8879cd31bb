"""Where a base or adapter lives: a local directory, or a Hugging Face repo id + subfolder.

Repo ids go through ``huggingface_hub.snapshot_download`` restricted to the subfolder, so the real
download path is the library's own: the token is the caller's or ``HF_TOKEN`` (and the stored login),
files come from the cache (``HF_HOME`` / ``HF_HUB_CACHE``) when present, and ``HF_HUB_OFFLINE=1`` or
``local_files_only=True`` never touch the network. Every failure becomes a :class:`ModelNotFoundError`
that says what to do.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from ..errors import ModelNotFoundError


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source.count("/") > 1 or Path(source).exists()


def resolve_model_dir(
    source: str | Path,
    subfolder: str | None,
    *,
    what: str,
    token: str | None = None,
    local_files_only: bool | None = None,
) -> Path:
    """The local directory holding ``source``/``subfolder``, downloading (only that subfolder) if needed.

    Args:
        source: a local directory or a repo id such as ``black-forest-labs/FLUX.1-dev``
        subfolder: e.g. ``transformer`` or ``gmflux_k8_piid_4step``; None = the top level
        what: ``base`` / ``adapter``, for the messages
        token: a Hugging Face token; None = ``HF_TOKEN`` or the stored login
        local_files_only: True = the cache only; None = as ``HF_HUB_OFFLINE`` says
    Raises:
        ModelNotFoundError: no such directory, an invalid repo id, a repo that does not exist or is
            gated, or a cache miss while offline
    """
    name = str(source)
    sub = subfolder.strip("/") if subfolder else ""
    if _looks_like_path(name):
        root = Path(name).expanduser()
        if not root.is_dir():
            raise ModelNotFoundError(f"{what}: no directory {root}")
        target = root / sub if sub else root
        if not target.is_dir():
            raise ModelNotFoundError(f"{what}: {root} has no subfolder {sub!r}")
        return target
    try:
        validate_repo_id(name)
    except HFValidationError as error:
        raise ModelNotFoundError(f"{what}: {name!r} is neither a directory nor a Hugging Face repo id ({error})") from None
    offline = constants.HF_HUB_OFFLINE if local_files_only is None else local_files_only
    where = f"{name}" + (f" (subfolder {sub})" if sub else "")
    try:
        snapshot = snapshot_download(
            repo_id=name,
            allow_patterns=[f"{sub}/*"] if sub else None,
            token=token,
            local_files_only=offline,
        )
    except GatedRepoError:
        raise ModelNotFoundError(
            f"{what}: {name} is gated: accept its licence on huggingface.co with your account and set HF_TOKEN"
        ) from None
    except RepositoryNotFoundError:
        raise ModelNotFoundError(f"{what}: {name} not found, or no access with this token (set HF_TOKEN)") from None
    except RevisionNotFoundError as error:
        raise ModelNotFoundError(f"{what}: {name}: {error}") from None
    except LocalEntryNotFoundError:
        if offline:
            why = "HF_HUB_OFFLINE=1" if local_files_only is None else "local_files_only=True"
            reason = f"downloads are off ({why})"
        else:
            reason = "the Hub could not be reached"
        raise ModelNotFoundError(f"{what}: {where} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {reason}") from None
    except (HfHubHTTPError, OSError) as error:
        raise ModelNotFoundError(f"{what}: could not download {where}: {error}") from None
    target = Path(snapshot) / sub if sub else Path(snapshot)
    if not target.is_dir():
        raise ModelNotFoundError(f"{what}: {name} has no subfolder {sub!r}")
    return target
