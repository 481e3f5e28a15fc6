"""Where models live on disk: Hugging Face ids and checkpoint references -> local folders.

Nothing is ever downloaded here, and nothing here knows where an application keeps its models: every
function takes the models folder from its caller. A repository `org/name` is found in the models
folder either as a plain folder `<models>/org/name/` or in the Hugging Face cache layout
`<models>/models--org--name/snapshots/<revision>/`. A missing model raises `ModelNotFoundError`,
whose message names the model and the folder, says why it may be missing (gated licences) and ends
with the caller's `hint` (for example how its application downloads models).
"""

from __future__ import annotations

import os
from pathlib import Path

# Repositories whose licence must be accepted on huggingface.co before they can be downloaded.
GATED_REPOSITORIES = {
    "facebook/dinov3-vitl16-pretrain-lvd1689m": "Meta's DINOv3 licence",
    "briaai/RMBG-2.0": "BRIA's RMBG-2.0 licence (non-commercial use without a BRIA agreement)",
}


class ModelNotFoundError(FileNotFoundError):
    """A model the job needs is not in the models folder.

    `hint` is appended to the message with `{repo_id}` replaced by the missing repository, so a
    caller can say how its users fetch exactly that model.
    """

    def __init__(
        self, model_id: str, models_dir: Path | str | None, detail: str = "", hint: str = ""
    ) -> None:
        self.model_id = model_id
        self.repo_id = repo_id_of(model_id)
        self.models_dir = models_dir
        self.hint = hint.replace("{repo_id}", self.repo_id)
        where = f" in the models folder {models_dir}" if models_dir is not None else ""
        parts = [f"model '{model_id}' was not found{where}" + (f" ({detail})" if detail else "") + "."]
        if self.repo_id in GATED_REPOSITORIES:
            parts.append(
                f"'{self.repo_id}' is a gated repository: accept {GATED_REPOSITORIES[self.repo_id]} at "
                f"https://huggingface.co/{self.repo_id} with your Hugging Face account, log in "
                "(`hf auth login`), then download it."
            )
        if self.hint:
            parts.append(self.hint)
        super().__init__(" ".join(parts))


def repo_id_of(reference: str) -> str:
    """`org/name/sub/path` -> `org/name` (a bare name is returned unchanged)."""
    parts = reference.replace("\\", "/").strip("/").split("/")
    return "/".join(parts[:2]) if len(parts) >= 2 else reference


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
    return (
        prefix.with_name(prefix.name + ".json").is_file()
        and prefix.with_name(prefix.name + ".safetensors").is_file()
    )


def resolve_checkpoint(
    reference: str,
    pipeline_dir: Path | str,
    models_dir: Path | str | None,
    pipeline_repo: str | None = None,
    hint: str = "",
) -> Path:
    """Checkpoint prefix (without `.json`/`.safetensors`) for a `pipeline.json` model reference.

    Tried in order: relative to the pipeline folder (`ckpts/...`), then as `org/name/sub/path` in
    the models folder (e.g. `microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16`).
    `pipeline_repo` names the pipeline's own repository in error messages; `hint` ends them.
    """
    local = Path(pipeline_dir) / reference
    if checkpoint_exists(local):
        return local
    parts = reference.replace("\\", "/").strip("/").split("/")
    if models_dir is not None and len(parts) > 2 and not local.parent.is_dir():
        repo_id = "/".join(parts[:2])
        repo = find_repository(models_dir, repo_id)
        if repo is None:
            raise ModelNotFoundError(reference, models_dir, f"repository '{repo_id}' is not downloaded", hint)
        if checkpoint_exists(repo.joinpath(*parts[2:])):
            return repo.joinpath(*parts[2:])
        raise ModelNotFoundError(
            reference, models_dir, f"{repo} lacks {'/'.join(parts[2:])}.json/.safetensors", hint
        )
    model_id = f"{pipeline_repo}/{reference}" if pipeline_repo else reference
    raise ModelNotFoundError(
        model_id,
        models_dir if models_dir is not None else pipeline_dir,
        f"expected {local}.json and {local}.safetensors",
        hint,
    )


def resolve_model_folder(
    name: str, pipeline_dir: Path | str, models_dir: Path | str | None, hint: str = ""
) -> Path:
    """Folder of a transformers model (DINOv3, BiRefNet): relative to the pipeline, or a hub id."""
    local = Path(pipeline_dir) / name
    if (local / "config.json").is_file():
        return local
    if models_dir is not None:
        repo = find_repository(models_dir, name)
        if repo is not None:
            if (repo / "config.json").is_file():
                return repo
            raise ModelNotFoundError(
                name, models_dir, f"{repo} has no config.json (incomplete download?)", hint
            )
    raise ModelNotFoundError(name, models_dir if models_dir is not None else pipeline_dir, hint=hint)


def locate_pipeline(path: str | os.PathLike, repo_id: str, hint: str = "") -> tuple[Path, Path | None]:
    """`(pipeline folder, models folder)` for a pipeline folder (with `pipeline.json`) or a models
    folder holding repository `repo_id`."""
    path = Path(path).expanduser()
    if (path / "pipeline.json").is_file():
        return path, models_dir_above(path)
    folder = find_repository(path, repo_id) if path.is_dir() else None
    if folder is None or not (folder / "pipeline.json").is_file():
        raise ModelNotFoundError(repo_id, path, "no pipeline.json", hint)
    return folder, path


def models_dir_above(pipeline_dir: Path) -> Path | None:
    """The models folder that holds a pipeline folder (plain `org/name` or HF cache layout)."""
    pipeline_dir = pipeline_dir.resolve()
    if pipeline_dir.parent.name == "snapshots" and pipeline_dir.parent.parent.name.startswith("models--"):
        return pipeline_dir.parents[2]
    return pipeline_dir.parents[1] if len(pipeline_dir.parents) >= 2 else None


def repo_id_of_folder(folder: Path | str) -> str:
    """The hub id `org/name` of a repository folder (plain `org/name` or HF cache layout)."""
    folder = Path(folder).resolve()
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.name[len("models--") :].replace("--", "/")
    return f"{folder.parent.name}/{folder.name}"
