"""The models the engines need, their state in the models folder, and fetching them (`Settings.models_dir`).

    genesis models                 # each model: state, size, licence, gated or not
    genesis models download        # explain licences, then download (resumable) and verify checksums
    genesis models download microsoft/TRELLIS.2-4B

The list of models is the pipeline's own (`trellis2.pipelines.model_check.DEFAULT_REPOSITORIES`, gated ones in
`model_paths.GATED_REPOSITORIES`) plus `ALTERNATIVES`, models that can stand in for one of the pipeline's (the
MIT BiRefNet for the non-commercial RMBG-2.0: same architecture, same loader); this module adds what a person
needs to decide (purpose, licence, size) and what to fetch.

Downloads go to `<models>/<org>/<name>/`. The hub's file list (with sizes and checksums) is kept there as
`MANIFEST_FILE`; every file is fetched into `PARTIAL_DIR` and continued with an HTTP Range request after an
interruption, a cancel or a restart (huggingface_hub itself deletes a partial file when a download fails), then
moved into place. Every file is then checked against the SHA-256 (large files) or git blob hash (small files)
the hub lists, and `VERIFIED_FILE` records the result. The server's download manager (`model_manager.py`) and
the CLI both call `fetch_model`; its failures are `DownloadError`s with a one-line message.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from .config import COMMAND_NAME
from .engines.trellis2 import BACKGROUND_MODEL
from .files import free_bytes, is_disk_full

VERIFIED_FILE = ".genesis-verified.json"  # every file matched the hub's checksum (written last)
MANIFEST_FILE = ".genesis-download.json"  # the hub's file list of the revision being fetched
PARTIAL_DIR = ".genesis-partial"  # files not finished yet, continued with HTTP Range
BACKGROUND_CHOICE_FILE = ".genesis-background.json"  # in the models folder: the background model chosen
CHUNK_BYTES = 256 * 2**10  # read size: a cancel is seen after at most one chunk
DISK_MARGIN_BYTES = 512 * 2**20  # kept free beyond a download's size
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
MISSING, PARTIAL, PRESENT, VERIFIED = "missing", "partial", "present", "verified"
BACKGROUND_FILES = ("config.json", "*.py", "model.safetensors")  # what the BiRefNet loader reads

Progress = Callable[[str, int, int], None]  # (phase: "downloading" | "verifying", bytes done, bytes in all)


@dataclass(frozen=True)
class ModelSpec:
    repo_id: str
    purpose: str
    licence: str
    gated: bool = False
    allow_patterns: tuple[str, ...] | None = None
    size_hint: int = 0  # bytes, about: what is shown until the hub's file list gives the exact figure
    background: bool = False  # a background-removal model (optional: images with transparency need none)


@dataclass(frozen=True)
class ModelNotes:
    """What the service tells people about a model, and which of its files to fetch."""

    purpose: str
    licence: str
    size_hint: int
    allow_patterns: tuple[str, ...] | None = None


MODEL_NOTES: dict[str, ModelNotes] = {
    "microsoft/TRELLIS.2-4B": ModelNotes("TRELLIS.2 flow models and decoders", "MIT", 16_000_000_000),
    "microsoft/TRELLIS-image-large": ModelNotes(
        "the sparse-structure decoder only", "MIT", 148_000_000, ("ckpts/ss_dec_conv3d_16l8_fp16.*",)
    ),
    "facebook/dinov3-vitl16-pretrain-lvd1689m": ModelNotes(
        "DINOv3 image features (conditioning)", "DINOv3 License (Meta)", 1_200_000_000
    ),
    "briaai/RMBG-2.0": ModelNotes(
        "background removal (not needed for images with transparency)",
        "CC BY-NC 4.0 (non-commercial; commercial use needs an agreement with BRIA)",
        885_000_000,
        BACKGROUND_FILES,
    ),
    "ZhengPeng7/BiRefNet": ModelNotes(
        "background removal, the licence-clean choice (not needed for images with transparency)",
        "MIT",
        445_000_000,
        BACKGROUND_FILES,
    ),
}
# Models that can stand in for one of the pipeline's: alternative → the pipeline's model.
ALTERNATIVES: dict[str, str] = {"ZhengPeng7/BiRefNet": BACKGROUND_MODEL}


def model_specs() -> tuple[ModelSpec, ...]:
    """Every model the pipeline needs, in its order, each followed by its alternatives."""
    from trellis2.pipelines.model_check import DEFAULT_REPOSITORIES

    specs = []
    for repo in DEFAULT_REPOSITORIES:
        specs.append(spec_of(repo))
        specs.extend(spec_of(alt) for alt, original in ALTERNATIVES.items() if original == repo)
    return tuple(specs)


def spec_of(repo_id: str) -> ModelSpec:
    from trellis2.pipelines.model_paths import GATED_REPOSITORIES

    notes = MODEL_NOTES.get(repo_id, ModelNotes("", "see the model's page on huggingface.co", 0))
    background = repo_id == BACKGROUND_MODEL or ALTERNATIVES.get(repo_id) == BACKGROUND_MODEL
    return ModelSpec(
        repo_id,
        notes.purpose,
        notes.licence,
        repo_id in GATED_REPOSITORIES,
        notes.allow_patterns,
        notes.size_hint,
        background,
    )


def find_spec(repo_id: str) -> ModelSpec:
    """The spec of `repo_id`; KeyError naming the known models for any other id."""
    for spec in model_specs():
        if spec.repo_id == repo_id:
            return spec
    raise KeyError(f"unknown model {repo_id!r}; known: {', '.join(s.repo_id for s in model_specs())}")


def hub_endpoint() -> str:
    """The hub's address (`$HF_ENDPOINT`, else https://huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def model_page(repo_id: str, endpoint: str | None = None) -> str:
    """The model's page on the hub: where a gated model's licence is accepted."""
    return f"{endpoint or hub_endpoint()}/{repo_id}"


def tokens_page(endpoint: str | None = None) -> str:
    return f"{endpoint or hub_endpoint()}/settings/tokens"


def local_folder(models_dir: Path, repo_id: str) -> Path:
    return Path(models_dir) / repo_id


# -- what is on disk ---------------------------------------------------------------------------------------
def presence(models_dir: Path) -> dict[str, tuple[bool, str]]:
    """`model id → (present, reason)`, as the pipeline's own check sees the folder."""
    from trellis2.pipelines import check_models

    return {model_id: (present, reason) for model_id, present, reason in check_models(models_dir)}


def loadable_background(models_dir: Path, repo_id: str) -> bool:
    """True when the background-removal loader finds what it reads (config.json, model.safetensors)."""
    from trellis2.pipelines.model_paths import find_repository

    folder = find_repository(models_dir, repo_id)
    return folder is not None and all((folder / n).is_file() for n in ("config.json", "model.safetensors"))


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def manifest_files(folder: Path) -> list[dict] | None:
    """The hub's file list kept by the last download (`[{name, size, kind, digest}]`), or None."""
    data = read_json(folder / MANIFEST_FILE)
    files = data.get("files") if data else None
    return files if isinstance(files, list) else None


def bytes_on_disk(folder: Path, files: list[dict]) -> int:
    """Bytes of `files` already in `folder`: finished files and the partial ones."""
    total = 0
    for f in files:
        done, part = folder / f["name"], folder / PARTIAL_DIR / f"{f['name']}.part"
        if done.is_file() and done.stat().st_size == f["size"]:
            total += f["size"]
        elif part.is_file():
            total += min(part.stat().st_size, f["size"])
    return total


def is_verified(folder: Path) -> bool:
    """`VERIFIED_FILE` is there and every file it lists still has its size."""
    data = read_json(folder / VERIFIED_FILE)
    if data is None:
        return False
    listed = data.get("files")
    if not isinstance(listed, dict):
        return True  # written by an older version: names and digests only
    return all(
        (folder / name).is_file() and (folder / name).stat().st_size == entry.get("size")
        for name, entry in listed.items()
    )


def model_state(models_dir: Path, spec: ModelSpec, found: dict[str, tuple[bool, str]]) -> str:
    """`missing`, `partial` (some files, not all), `present` (what the engines read is there) or `verified`
    (present, and every file matched the hub's checksum). `found` is `presence(models_dir)`."""
    folder = local_folder(models_dir, spec.repo_id)
    files = manifest_files(folder)
    on_disk = bytes_on_disk(folder, files) if files is not None else 0
    complete = files is None or on_disk == sum(f["size"] for f in files)
    if spec.repo_id in found:
        present = found[spec.repo_id][0]
    else:
        present = loadable_background(models_dir, spec.repo_id)
    if present and complete:
        return VERIFIED if is_verified(folder) else PRESENT
    if files is not None:  # a download has started here
        return PARTIAL if on_disk > 0 else MISSING
    if folder.is_dir() and any(folder.iterdir()):
        return PARTIAL
    return PRESENT if present else MISSING


def local_size(models_dir: Path, spec: ModelSpec) -> tuple[int, bool, int]:
    """`(size in bytes, exact, bytes on disk)`: exact once a download has listed the hub's files."""
    folder = local_folder(models_dir, spec.repo_id)
    files = manifest_files(folder)
    if files is None:
        return spec.size_hint, False, 0
    return sum(f["size"] for f in files), True, bytes_on_disk(folder, files)


# -- background removal ------------------------------------------------------------------------------------
def background_models() -> tuple[str, ...]:
    """The background-removal models, the licence-clean ones (alternatives) first."""
    return (*ALTERNATIVES, BACKGROUND_MODEL)


def chosen_background(models_dir: Path) -> str | None:
    """The background model picked in the app or with `genesis models use`, or None (never picked)."""
    data = read_json(Path(models_dir) / BACKGROUND_CHOICE_FILE)
    choice = data.get("model") if data else None
    return choice if choice in background_models() else None


def choose_background(models_dir: Path, repo_id: str | None) -> None:
    """Remember `repo_id` as the background model (None forgets the choice)."""
    path = Path(models_dir) / BACKGROUND_CHOICE_FILE
    if repo_id is None:
        path.unlink(missing_ok=True)
        return
    if repo_id not in background_models():
        raise KeyError(f"{repo_id!r} is not a background-removal model; choose one of {background_models()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": repo_id}))


def wanted_background(models_dir: Path) -> str:
    """The background model to download: the chosen one, else the licence-clean one."""
    return chosen_background(models_dir) or background_models()[0]


def background_model(models_dir: Path) -> str | None:
    """The background model in use: the chosen one when it is installed, else the first installed of
    `background_models()` (licence-clean first); None when none is (only transparent images then)."""
    chosen = chosen_background(models_dir)
    order = ([chosen] if chosen else []) + [m for m in background_models() if m != chosen]
    return next((m for m in order if loadable_background(models_dir, m)), None)


def download_set(models_dir: Path) -> list[ModelSpec]:
    """What "download all" fetches: every model the pipeline needs, and one background model (the wanted one)."""
    wanted = wanted_background(models_dir)
    return [s for s in model_specs() if not s.background or s.repo_id == wanted]


# -- checksums ----------------------------------------------------------------------------------------------
def git_blob_sha1(path: Path, cancel: threading.Event | None = None, on_bytes=None) -> str:
    h = hashlib.sha1()
    h.update(f"blob {path.stat().st_size}\0".encode())
    return hash_file(h, path, cancel, on_bytes)


def sha256(path: Path, cancel: threading.Event | None = None, on_bytes=None) -> str:
    return hash_file(hashlib.sha256(), path, cancel, on_bytes)


def hash_file(h, path: Path, cancel: threading.Event | None, on_bytes) -> str:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            h.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return h.hexdigest()


def verify(
    folder: Path,
    expected: dict[str, tuple[str, str]],
    cancel: threading.Event | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> list[str]:
    """`expected`: file → ("sha256" | "sha1", hex). Returns the files that are missing or differ."""
    bad = []
    for name, (kind, digest) in expected.items():
        path = folder / name
        if not path.is_file():
            bad.append(f"{name} (missing)")
            continue
        hasher = sha256 if kind == "sha256" else git_blob_sha1
        if hasher(path, cancel, on_bytes) != digest:
            bad.append(f"{name} (checksum mismatch)")
    return bad


# -- errors -------------------------------------------------------------------------------------------------
class Cancelled(Exception):
    """The download was cancelled; what was fetched is kept and the next download continues it."""


class DownloadError(Exception):
    """A download that could not finish: `code` (no_network, wrong_token, token_needed, licence_not_accepted,
    disk_full, not_found, checksum, download_failed) and one line a person can act on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


NETWORK_ERROR_NAMES = {"ConnectError", "ConnectTimeout", "ReadTimeout", "NetworkError", "TimeoutException"}
KEPT = "the bytes already fetched are kept and the download continues where it stopped"


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


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def classify(
    exc: BaseException, spec: ModelSpec, token: str | None, folder: Path, endpoint: str
) -> DownloadError:
    """One line for a failed download: no network, a refused token (401), a licence not accepted (403), a
    full disk, or what else the hub said. The token never appears in it."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    repo, page = spec.repo_id, model_page(spec.repo_id, endpoint)
    if isinstance(exc, OfflineModeIsEnabled):
        return DownloadError(
            "no_network", "Downloads are switched off (HF_HUB_OFFLINE is set): unset it, then download again."
        )
    response = getattr(exc, "response", None) if isinstance(exc, HfHubHTTPError) else None
    status = getattr(response, "status_code", None)
    if is_disk_full(exc):
        return DownloadError(
            "disk_full",
            f"The disk holding {folder} is full ({gigabytes(free_bytes(folder))} free): free some space, "
            f"then download {repo} again; {KEPT}.",
        )
    if is_network_error(exc):
        return DownloadError(
            "no_network",
            f"{hub_host(endpoint)} cannot be reached: check the network connection or proxy, then download "
            f"again; {KEPT}.",
        )
    if status == 401 and token:
        return DownloadError(
            "wrong_token",
            f"Hugging Face refused the token (401): check it, or create a read token at {tokens_page(endpoint)}.",
        )
    if isinstance(exc, GatedRepoError) or (spec.gated and status in (401, 403)):
        if not token:
            return DownloadError(
                "token_needed",
                f"{repo} is gated: accept its licence at {page}, then enter your Hugging Face token.",
            )
        return DownloadError(
            "licence_not_accepted",
            f"Access to {repo} was refused (403): accept its licence at {page} with the account the token "
            "belongs to.",
        )
    if isinstance(exc, RepositoryNotFoundError) or status == 404:
        return DownloadError("not_found", f"{repo} was not found on {hub_host(endpoint)}.")
    if status is not None:
        return DownloadError("download_failed", f"{hub_host(endpoint)} answered {status} for {repo}; {KEPT}.")
    first_line = (str(exc).strip().splitlines() or [""])[0][:200]
    return DownloadError(
        "download_failed", f"Downloading {repo} failed ({type(exc).__name__}: {first_line})."
    )


def hub_host(endpoint: str) -> str:
    return re.sub(r"^\w+://", "", endpoint).split("/")[0]


def redact(text: str, token: str | None) -> str:
    """`text` with the token (should it ever appear) blanked out."""
    return text.replace(token, "<token>") if token else text


# -- fetching ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    kind: str  # "sha256" (LFS files), "sha1" (git blob id) or "" (no checksum listed)
    digest: str

    def to_json(self) -> dict:
        return {"name": self.name, "size": self.size, "kind": self.kind, "digest": self.digest}


def list_remote(spec: ModelSpec, token: str | None, endpoint: str) -> tuple[str, list[RemoteFile]]:
    """`(revision, files)` of the model on the hub, only the files `spec.allow_patterns` asks for."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=endpoint).model_info(spec.repo_id, files_metadata=True, token=token or False)
    files = []
    for sibling in info.siblings or []:
        name = sibling.rfilename
        if spec.allow_patterns and not any(fnmatch(name, p) for p in spec.allow_patterns):
            continue
        lfs = sibling.lfs
        if lfs is not None:
            kind, digest = "sha256", lfs.sha256 if hasattr(lfs, "sha256") else lfs["sha256"]
        elif sibling.blob_id:
            kind, digest = "sha1", sibling.blob_id
        else:
            kind, digest = "", ""
        files.append(RemoteFile(name, int(sibling.size or 0), kind, digest))
    return info.sha or "main", files


def check_free_space(folder: Path, needed: int, repo_id: str) -> None:
    """Refuse to start when the disk cannot hold what is still to be fetched."""
    free = free_bytes(folder)
    if needed > 0 and free < needed + DISK_MARGIN_BYTES:
        raise DownloadError(
            "disk_full",
            f"Not enough disk space for {repo_id}: {gigabytes(needed)} still to download, "
            f"{gigabytes(free)} free in {folder}; free some space or use another models folder (--models-dir).",
        )


def fetch_file(
    url: str,
    headers: dict[str, str],
    part: Path,
    size: int,
    cancel: threading.Event,
    on_bytes: Callable[[int], None],
) -> None:
    """Fetch `url` into `part`, continuing after the bytes already there (HTTP Range)."""
    from huggingface_hub.utils import get_session, hf_raise_for_status

    have = part.stat().st_size if part.is_file() else 0
    if have > size:
        part.unlink()
        on_bytes(-have)
        have = 0
    if have == size and size > 0:
        return
    request_headers = {**headers, "Accept-Encoding": "identity"}
    if have:
        request_headers["Range"] = f"bytes={have}-"
    timeout = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S, READ_TIMEOUT_S, CONNECT_TIMEOUT_S)
    with get_session().stream(
        "GET", url, headers=request_headers, follow_redirects=True, timeout=timeout
    ) as response:
        if response.status_code >= 400:
            response.read()
            hf_raise_for_status(response)
        if have and response.status_code != 206:  # the server sent the whole file again
            on_bytes(-have)
            have = 0
        with open(part, "ab" if have else "wb") as out:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                if cancel.is_set():
                    raise Cancelled()
                out.write(chunk)
                have += len(chunk)
                on_bytes(len(chunk))
    if have != size:
        raise DownloadError(
            "download_failed", f"{part.name[:-5]} ended after {have:,} of {size:,} bytes; {KEPT}."
        )


def fetch_model(
    spec: ModelSpec,
    folder: Path,
    token: str | None,
    *,
    endpoint: str | None = None,
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> None:
    """Download `spec` into `folder` (continuing what is there), then verify every file's checksum.

    Raises `Cancelled` when `cancel` is set (within one chunk) and `DownloadError` for every failure."""
    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    cancel = cancel or threading.Event()
    report = progress or (lambda phase, done, total: None)
    try:
        _fetch(spec, Path(folder), token, endpoint, cancel, report)
    except (Cancelled, DownloadError):
        raise
    except Exception as exc:
        raise classify(exc, spec, token, Path(folder), endpoint) from None


def _fetch(
    spec: ModelSpec, folder: Path, token: str | None, endpoint: str, cancel: threading.Event, report: Progress
) -> None:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    if cancel.is_set():
        raise Cancelled()
    revision, files = list_remote(spec, token, endpoint)
    folder.mkdir(parents=True, exist_ok=True)
    listing = [f.to_json() for f in files]
    (folder / MANIFEST_FILE).write_text(json.dumps({"revision": revision, "files": listing}, indent=1))
    total = sum(f.size for f in files)
    done = bytes_on_disk(folder, listing)
    check_free_space(folder, total - done, spec.repo_id)
    report("downloading", done, total)
    headers = build_hf_headers(token=token or False)

    def add(n: int) -> None:
        nonlocal done
        done += n
        report("downloading", done, total)

    for f in files:
        if cancel.is_set():
            raise Cancelled()
        target = folder / f.name
        if target.is_file() and target.stat().st_size == f.size:
            continue
        part = folder / PARTIAL_DIR / f"{f.name}.part"
        part.parent.mkdir(parents=True, exist_ok=True)
        url = hf_hub_url(spec.repo_id, f.name, revision=revision, endpoint=endpoint)
        fetch_file(url, headers, part, f.size, cancel, add)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(part, target)
    shutil.rmtree(folder / PARTIAL_DIR, ignore_errors=True)

    hashed = 0

    def hashed_more(n: int) -> None:
        nonlocal hashed
        hashed += n
        report("verifying", hashed, total)

    report("verifying", 0, total)
    expected = {f.name: (f.kind, f.digest) for f in files if f.kind}
    bad = verify(folder, expected, cancel, hashed_more)
    if bad:
        for name in bad:
            (folder / name.split(" (")[0]).unlink(missing_ok=True)  # fetched afresh next time
        raise DownloadError(
            "checksum",
            f"{spec.repo_id}: {len(bad)} file(s) did not match the hub's checksum ({', '.join(bad[:3])}); "
            "they were deleted: download again.",
        )
    verified = {f.name: {"kind": f.kind, "digest": f.digest, "size": f.size} for f in files}
    record = {"revision": revision, "verified_at": time.time(), "files": verified}
    (folder / VERIFIED_FILE).write_text(json.dumps(record, indent=1))


# -- the command line -----------------------------------------------------------------------------------------
def print_status(models_dir: Path) -> int:
    """One line per model (state, size, licence, gated); exit code 0 when everything needed is present."""
    print(f"models folder: {models_dir}  ({gigabytes(free_bytes(models_dir))} free)")
    found = presence(models_dir)
    in_use = background_model(models_dir)
    missing = 0
    for spec in model_specs():
        state = model_state(models_dir, spec, found)
        size, exact, _ = local_size(models_dir, spec)
        # one background model is enough: the wanted one is needed only while none is in use
        needed = not spec.background or (in_use is None and spec.repo_id == wanted_background(models_dir))
        missing += needed and state in (MISSING, PARTIAL)
        notes = [spec.licence.split(" (")[0]] + (["gated"] if spec.gated else [])
        if spec.background:
            notes.append("in use" if spec.repo_id == in_use else "not in use")
        shown_size = ("" if exact else "~") + gigabytes(size)
        print(f"  {spec.repo_id:<42} {state:<9} {shown_size:>9}  {', '.join(notes)}")
    if missing:
        print(f"Download the missing models with: {COMMAND_NAME} models download")
    return 1 if missing else 0


def explain(specs: list[ModelSpec], token: str | None) -> None:
    print("Genesis will download these models from Hugging Face:")
    for spec in specs:
        print(f"  - {spec.repo_id}: {spec.purpose}. Licence: {spec.licence}.")
    gated = [s for s in specs if s.gated]
    if gated:
        print("\nGated models: their licences must be accepted on huggingface.co before downloading:")
        for spec in gated:
            print(f"  - open {model_page(spec.repo_id)}, sign in, and accept the licence.")
        if token:
            print("A Hugging Face token was found and will be used.")
        else:
            print(
                f"No Hugging Face token was found: create one at {tokens_page()} (type 'read'), then run "
                f"`{COMMAND_NAME} models token`, set HF_TOKEN, or pass --hf-token."
            )
    print()


class TerminalProgress:
    """A one-line progress bar on a terminal (bytes, speed, time left); silent otherwise."""

    def __init__(self, stream=sys.stdout) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.start: tuple[float, int] | None = None  # (time, bytes) of the first report: speed of this run
        self.shown = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        self.start = self.start or (now, done)
        if not self.live or now - self.shown < 0.2:
            return
        self.shown = now
        elapsed = now - self.start[0]
        speed = (done - self.start[1]) / elapsed if elapsed > 1 and phase == "downloading" else 0
        left = f", {(total - done) / speed / 60:.0f} min left" if speed > 0 else ""
        rate = f", {speed / 1e6:.1f} MB/s" if speed > 0 else ""
        fraction = done / total if total else 1.0
        bar = "#" * int(fraction * 30)
        self.stream.write(
            f"\r    {phase:<11} [{bar:<30}] {gigabytes(done)} of {gigabytes(total)}{rate}{left}   "
        )
        self.stream.flush()

    def end(self) -> None:
        if self.live:
            self.stream.write("\n")


def download_all(
    models_dir: Path,
    token: str | None = None,
    assume_yes: bool = False,
    only: list[str] | None = None,
    data_dir: Path | None = None,
) -> int:
    """`genesis models download`: explain, ask, then fetch and verify each model; exit code 0 when all are."""
    from .hf_token import TokenStore

    known = model_specs()
    specs = [s for s in known if s.repo_id in only] if only else download_set(models_dir)
    unknown = sorted(set(only or []) - {s.repo_id for s in known})
    if unknown:
        print(
            f"error: unknown model(s) {', '.join(unknown)}; known: {', '.join(s.repo_id for s in known)}",
            file=sys.stderr,
        )
        return 2
    token = token or TokenStore(data_dir).resolve()
    explain(specs, token)
    if not assume_yes:
        if not sys.stdin.isatty():
            print("Re-run with --yes to download without being asked.", file=sys.stderr)
            return 2
        if input("Download now? [y/N] ").strip().lower() not in ("y", "yes"):
            return 1
    failed = 0
    for spec in specs:
        folder = local_folder(models_dir, spec.repo_id)
        print(f"==> {spec.repo_id} → {folder}")
        bar = TerminalProgress()
        try:
            fetch_model(spec, folder, token, progress=bar)
        except DownloadError as exc:
            bar.end()
            print(f"error: {redact(exc.message, token)}", file=sys.stderr)
            if exc.code == "no_network":
                return 1  # one message, not one per model
            failed += 1
            continue
        except KeyboardInterrupt:
            bar.end()
            print(f"interrupted: run `{COMMAND_NAME} models download` again to continue.", file=sys.stderr)
            raise
        bar.end()
        print("    verified")
    return 1 if failed else 0
