"""The models the engines need, and fetching them into the models folder (`Settings.models_dir`).

    genesis models                 # what is present, what is missing
    genesis models download        # explain licences, then download (resumable) and verify checksums
    genesis models download microsoft/TRELLIS.2-4B

The list of models is the pipeline's own (`trellis2.pipelines.model_check.DEFAULT_REPOSITORIES`, gated ones in
`model_paths.GATED_REPOSITORIES`); this module adds what a person needs to decide (purpose, licence) and what to
fetch. Downloads go to `<models>/<org>/<name>/` with `huggingface_hub` (interrupted downloads resume). Every
file is then checked against the SHA-256 (large files) or git blob hash (small files) the hub lists.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from .config import COMMAND_NAME

VERIFIED_FILE = ".genesis-verified.json"


@dataclass(frozen=True)
class ModelSpec:
    repo_id: str
    purpose: str
    licence: str
    gated: bool = False
    allow_patterns: tuple[str, ...] | None = None


# What the service tells people about each model the pipeline names, and which files to fetch.
MODEL_NOTES: dict[str, tuple[str, str, tuple[str, ...] | None]] = {
    "microsoft/TRELLIS.2-4B": ("TRELLIS.2 flow models and decoders (about 16 GB)", "MIT", None),
    "microsoft/TRELLIS-image-large": (
        "the sparse-structure decoder only",
        "MIT",
        ("ckpts/ss_dec_conv3d_16l8_fp16.*",),
    ),
    "facebook/dinov3-vitl16-pretrain-lvd1689m": (
        "DINOv3 image features (conditioning)",
        "DINOv3 License (Meta)",
        None,
    ),
    "briaai/RMBG-2.0": (
        "background removal (not needed for images with transparency)",
        "CC BY-NC 4.0 (non-commercial; commercial use needs an agreement with BRIA)",
        None,
    ),
}


def model_specs() -> tuple[ModelSpec, ...]:
    """Every model the pipeline needs, in its order."""
    from trellis2.pipelines.model_check import DEFAULT_REPOSITORIES
    from trellis2.pipelines.model_paths import GATED_REPOSITORIES

    specs = []
    for repo in DEFAULT_REPOSITORIES:
        purpose, licence, patterns = MODEL_NOTES.get(
            repo, ("", "see the model's page on huggingface.co", None)
        )
        specs.append(ModelSpec(repo, purpose, licence, repo in GATED_REPOSITORIES, patterns))
    return tuple(specs)


def local_folder(models_dir: Path, repo_id: str) -> Path:
    return Path(models_dir) / repo_id


def presence(models_dir: Path) -> dict[str, tuple[bool, str]]:
    """`model id → (present, reason)`, as the pipeline's own check sees the folder."""
    from trellis2.pipelines import check_models

    return {model_id: (present, reason) for model_id, present, reason in check_models(models_dir)}


def print_status(models_dir: Path) -> int:
    """One line per model; exit code 0 when everything is present."""
    print(f"models folder: {models_dir}")
    found = presence(models_dir)
    missing = 0
    for spec in model_specs():
        present = found.get(spec.repo_id, (False, ""))[0]
        verified = (local_folder(models_dir, spec.repo_id) / VERIFIED_FILE).is_file()
        state = ("present, verified" if verified else "present") if present else "MISSING"
        missing += not present
        print(f"  {spec.repo_id:<42} {state:<18} {spec.purpose}")
    if missing:
        print(f"Download the missing models with: {COMMAND_NAME} models download")
    return 1 if missing else 0


def git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1()
    h.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(folder: Path, expected: dict[str, tuple[str, str]]) -> list[str]:
    """`expected`: file → ("sha256" | "sha1", hex). Returns the files that are missing or differ."""
    bad = []
    for name, (kind, digest) in expected.items():
        path = folder / name
        if not path.is_file():
            bad.append(f"{name} (missing)")
        elif (sha256(path) if kind == "sha256" else git_blob_sha1(path)) != digest:
            bad.append(f"{name} (checksum mismatch)")
    return bad


def expected_hashes(api, spec: ModelSpec, token: str | None) -> tuple[dict[str, tuple[str, str]], int]:
    from fnmatch import fnmatch

    info = api.model_info(spec.repo_id, files_metadata=True, token=token)
    out, total = {}, 0
    for sibling in info.siblings or []:
        name = sibling.rfilename
        if spec.allow_patterns and not any(fnmatch(name, p) for p in spec.allow_patterns):
            continue
        lfs = getattr(sibling, "lfs", None)
        if lfs is not None:
            out[name] = ("sha256", lfs.sha256 if hasattr(lfs, "sha256") else lfs["sha256"])
        elif getattr(sibling, "blob_id", None):
            out[name] = ("sha1", sibling.blob_id)
        total += int(getattr(sibling, "size", 0) or 0)
    return out, total


def explain(specs: list[ModelSpec], token: str | None) -> None:
    print("Genesis will download these models from Hugging Face:")
    for spec in specs:
        print(f"  - {spec.repo_id}: {spec.purpose}. Licence: {spec.licence}.")
    gated = [s for s in specs if s.gated]
    if gated:
        print("\nGated models: their licences must be accepted on huggingface.co before downloading:")
        for spec in gated:
            print(f"  - open https://huggingface.co/{spec.repo_id}, sign in, and accept the licence.")
        if token:
            print("A Hugging Face token was found and will be used.")
        else:
            print(
                "No Hugging Face token was found: create one at https://huggingface.co/settings/tokens "
                "(type 'read'), then run `hf auth login`, set HF_TOKEN, or pass --hf-token."
            )
    print()


class NoConnection(Exception):
    """Hugging Face cannot be reached: no model can be downloaded now (one message, not one per model)."""


NETWORK_ERROR_NAMES = {"ConnectError", "ConnectTimeout", "ReadTimeout", "NetworkError", "TimeoutException"}


def is_network_error(exc: BaseException) -> bool:
    """True for a failure to reach the hub (DNS, refused, timeout), seen anywhere in the exception's chain,
    whichever HTTP library huggingface_hub uses underneath."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if (
            isinstance(exc, (socket.gaierror, ConnectionError, TimeoutError))
            or type(exc).__name__ in NETWORK_ERROR_NAMES
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def download_all(
    models_dir: Path, token: str | None = None, assume_yes: bool = False, only: list[str] | None = None
) -> int:
    from huggingface_hub import HfApi, get_token

    known = model_specs()
    specs = [s for s in known if not only or s.repo_id in only]
    unknown = sorted(set(only or []) - {s.repo_id for s in known})
    if unknown:
        print(
            f"error: unknown model(s) {', '.join(unknown)}; known: {', '.join(s.repo_id for s in known)}",
            file=sys.stderr,
        )
        return 2
    token = token or get_token()
    explain(specs, token)
    if not assume_yes:
        if not sys.stdin.isatty():
            print("Re-run with --yes to download without being asked.", file=sys.stderr)
            return 2
        if input("Download now? [y/N] ").strip().lower() not in ("y", "yes"):
            return 1
    api = HfApi()
    try:
        problems = [download_one(api, spec, local_folder(models_dir, spec.repo_id), token) for spec in specs]
    except NoConnection as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for problem in filter(None, problems):
        print(f"    {problem}", file=sys.stderr)
    return 1 if any(problems) else 0


def download_one(api, spec: ModelSpec, folder: Path, token: str | None) -> str | None:
    """Download and verify one model into `folder`; None when it is complete, else what went wrong and what to do."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    print(f"==> {spec.repo_id} → {folder}")
    try:
        expected, total = expected_hashes(api, spec, token)
        print(f"    {len(expected)} files, {total / 1e9:.2f} GB")
        snapshot_download(
            spec.repo_id,
            local_dir=folder,
            token=token,
            allow_patterns=list(spec.allow_patterns) if spec.allow_patterns else None,
        )
        bad = verify(folder, expected)
    except GatedRepoError:
        return (
            f"{spec.repo_id}: access denied: accept the licence at https://huggingface.co/{spec.repo_id} and "
            "make sure your token belongs to that account."
        )
    except RepositoryNotFoundError:
        return f"{spec.repo_id} was not found (or needs a token to be seen)."
    except Exception as exc:
        if is_network_error(exc):
            raise NoConnection(
                f"huggingface.co cannot be reached ({type(exc).__name__}): check the network connection or proxy, "
                "then run the command again; files already downloaded are kept and the download resumes."
            ) from None
        if isinstance(exc, (HfHubHTTPError, OSError)):  # e.g. a full disk: says so, keeps what is there
            return f"{spec.repo_id}: download failed: {exc}. Run the command again to resume."
        raise
    if bad:
        return f"{spec.repo_id}: checksum problems: {', '.join(bad[:5])}. Delete those files and run again."
    (folder / VERIFIED_FILE).write_text(json.dumps({k: v[1] for k, v in expected.items()}, indent=1))
    print("    verified")
    return None
