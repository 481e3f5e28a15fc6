"""Where models live on disk: Hugging Face ids and checkpoint references -> local folders.

Nothing is ever downloaded here. A repository `org/name` is found in the models folder either as a
plain folder `<models>/org/name/` or in the Hugging Face cache layout
`<models>/models--org--name/snapshots/<revision>/`. A missing model raises `ModelNotFoundError`,
whose message names the model, says why it may be missing (gated licences) and gives the command
that downloads it.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOWNLOAD_COMMAND = "genesis models download"

# Repositories whose licence must be accepted on huggingface.co before they can be downloaded.
GATED_REPOSITORIES = {
    "facebook/dinov3-vitl16-pretrain-lvd1689m": "Meta's DINOv3 licence",
    "briaai/RMBG-2.0": "BRIA's RMBG-2.0 licence (non-commercial use without a BRIA agreement)",
}


class ModelNotFoundError(FileNotFoundError):
    """A model the job needs is not in the models folder."""

    def __init__(self, model_id: str, models_dir: Path | str | None, detail: str = "") -> None:
        self.model_id = model_id
        self.repo_id = repo_id_of(model_id)
        self.download_command = f"{DOWNLOAD_COMMAND} {self.repo_id}"
        where = f" in the models folder {models_dir}" if models_dir is not None else ""
        parts = [f"model '{model_id}' was not found{where}" + (f" ({detail})" if detail else "") + "."]
        if self.repo_id in GATED_REPOSITORIES:
            parts.append(
                f"'{self.repo_id}' is a gated repository: accept {GATED_REPOSITORIES[self.repo_id]} at "
                f"https://huggingface.co/{self.repo_id} with your Hugging Face account, log in "
                "(`hf auth login`), then download it."
            )
        parts.append(f"Download it with: {self.download_command}")
        super().__init__(" ".join(parts))


def repo_id_of(reference: str) -> str:
    """`org/name/sub/path` -> `org/name` (a bare name is returned unchanged)."""
    parts = reference.replace("\\", "/").strip("/").split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 else reference


def default_models_dir() -> Path:
    """`$GENESIS_MODELS_DIR`, else `models/` at the repository root."""
    env = os.environ.get("GENESIS_MODELS_DIR")
    return Path(env).expanduser() if env else REPO_ROOT / "models"


def find_repository(models_dir: Path | str, repo_id: str) -> Path | None:
    """The local folder of hub repository `repo_id`, or None."""
    models_dir = Path(models_dir)
    org_name = repo_id.split("/")
    if len(org_name) != 2 or not all(org_name):
        return None
    plain = models_dir / org_name[0] / org_name[1]
    if plain.is_dir():
        return plain
    cache = models_dir / f"models--{org_name[0]}--{org_name[1]}"
    snapshots = cache / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = cache / "refs" / "main"
    if ref.is_file():
        pinned = snapshots / ref.read_text().strip()
        if pinned.is_dir():
            return pinned
    revisions = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return revisions[-1] if revisions else None


def checkpoint_exists(prefix: Path) -> bool:
    return prefix.with_name(prefix.name + ".json").is_file() and prefix.with_name(
        prefix.name + ".safetensors"
    ).is_file()


def resolve_checkpoint(
    reference: str, pipeline_dir: Path | str, models_dir: Path | str | None, pipeline_repo: str | None = None
) -> Path:
    """Checkpoint prefix (without `.json`/`.safetensors`) for a `pipeline.json` model reference.

    Tried in order: relative to the pipeline folder (`ckpts/...`), then as `org/name/sub/path` in
    the models folder (e.g. `microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16`).
    `pipeline_repo` names the pipeline's own repository in error messages.
    """
    local = Path(pipeline_dir) / reference
    if checkpoint_exists(local):
        return local
    parts = reference.replace("\\", "/").strip("/").split("/")
    if models_dir is not None and len(parts) > 2 and not local.parent.is_dir():
        repo_id = "/".join(parts[:2])
        repo = find_repository(models_dir, repo_id)
        if repo is None:
            raise ModelNotFoundError(reference, models_dir, f"repository '{repo_id}' is not downloaded")
        if checkpoint_exists(repo.joinpath(*parts[2:])):
            return repo.joinpath(*parts[2:])
        raise ModelNotFoundError(reference, models_dir, f"{repo} lacks {'/'.join(parts[2:])}.json/.safetensors")
    model_id = f"{pipeline_repo}/{reference}" if pipeline_repo else reference
    raise ModelNotFoundError(
        model_id, models_dir if models_dir is not None else pipeline_dir,
        f"expected {local}.json and {local}.safetensors",
    )


def resolve_model_folder(name: str, pipeline_dir: Path | str, models_dir: Path | str | None) -> Path:
    """Folder of a transformers model (DINOv3, BiRefNet): relative to the pipeline, or a hub id."""
    local = Path(pipeline_dir) / name
    if (local / "config.json").is_file():
        return local
    if models_dir is not None:
        repo = find_repository(models_dir, name)
        if repo is not None:
            if (repo / "config.json").is_file():
                return repo
            raise ModelNotFoundError(name, models_dir, f"{repo} has no config.json (incomplete download?)")
    raise ModelNotFoundError(name, models_dir if models_dir is not None else pipeline_dir)


def locate_pipeline(path_or_models_dir: str | os.PathLike | None, repo_id: str) -> tuple[Path, Path | None]:
    """`(pipeline folder, models folder)` for a pipeline folder, a models folder or a hub id."""
    if path_or_models_dir is None:
        models_dir = default_models_dir()
        path = None
    else:
        path = Path(path_or_models_dir).expanduser()
        models_dir = None
    if path is not None and (path / "pipeline.json").is_file():
        return path, _models_dir_above(path)
    if path is not None and path.is_dir():
        models_dir = path
    elif path is not None:
        # a hub id such as "microsoft/TRELLIS.2-4B", looked up in the default models folder
        models_dir, repo_id = default_models_dir(), str(path_or_models_dir)
    folder = find_repository(models_dir, repo_id)
    if folder is None or not (folder / "pipeline.json").is_file():
        raise ModelNotFoundError(repo_id, models_dir, "no pipeline.json")
    return folder, models_dir


def _models_dir_above(pipeline_dir: Path) -> Path | None:
    """The models folder that holds a pipeline folder (plain `org/name` or HF cache layout)."""
    pipeline_dir = pipeline_dir.resolve()
    if pipeline_dir.parent.name == "snapshots" and pipeline_dir.parent.parent.name.startswith("models--"):
        return pipeline_dir.parents[2]
    env = os.environ.get("GENESIS_MODELS_DIR")
    if env and Path(env).expanduser().resolve() in pipeline_dir.parents:
        return Path(env).expanduser()
    return pipeline_dir.parents[1] if len(pipeline_dir.parents) >= 2 else None
