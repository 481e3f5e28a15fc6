"""Which models of the TRELLIS.2 pipeline are present in a models folder (for health checks and the CLI)."""

from __future__ import annotations

from pathlib import Path

from .model_paths import (
    ModelNotFoundError,
    find_repository,
    repo_id_of,
    resolve_checkpoint,
    resolve_model_folder,
)
from .pipeline_config import MODEL_KEYS, PIPELINE_REPO, PipelineConfig, PipelineConfigError

DEFAULT_REPOSITORIES = (
    PIPELINE_REPO,
    "microsoft/TRELLIS-image-large",
    "facebook/dinov3-vitl16-pretrain-lvd1689m",
    "briaai/RMBG-2.0",
)
OPTIONAL_NOTE = "needed only for images without transparency (background removal)"


def check_models(models_dir: str | Path, hint: str = "") -> list[tuple[str, bool, str]]:
    """`(model id, present, reason)` for every repository the pipeline needs; nothing is loaded.

    A repository is present when every file the pipeline reads from it exists. `reason` is "ok" or
    a person-readable explanation ending with `hint` (see `ModelNotFoundError`).
    """
    models_dir = Path(models_dir)
    pipeline_dir = find_repository(models_dir, PIPELINE_REPO)
    if pipeline_dir is None or not (pipeline_dir / "pipeline.json").is_file():
        error = ModelNotFoundError(PIPELINE_REPO, models_dir, "no pipeline.json", hint)
        results = [(PIPELINE_REPO, False, str(error))]
        for repo in DEFAULT_REPOSITORIES[1:]:
            present = find_repository(models_dir, repo) is not None
            results.append(
                (repo, present, "ok" if present else str(ModelNotFoundError(repo, models_dir, hint=hint)))
            )
        return results
    try:
        config = PipelineConfig.load(pipeline_dir / "pipeline.json")
    except PipelineConfigError as exc:
        return [(PIPELINE_REPO, False, str(exc))]

    problems: dict[str, list[str]] = {PIPELINE_REPO: []}
    for key in MODEL_KEYS:
        reference = config.models.get(key)
        repo = (
            repo_id_of(reference)
            if reference and len(reference.split("/")) > 2 and not (pipeline_dir / reference).parent.is_dir()
            else PIPELINE_REPO
        )
        problems.setdefault(repo, [])
        if reference is None:
            problems[PIPELINE_REPO].append(f"pipeline.json has no '{key}'")
            continue
        try:
            resolve_checkpoint(reference, pipeline_dir, models_dir, PIPELINE_REPO, hint)
        except ModelNotFoundError as exc:
            problems[repo].append(str(exc))
    results = [(repo, not issues, "ok" if not issues else issues[0]) for repo, issues in problems.items()]
    for name, note in ((config.image_cond_model, ""), (config.rembg_model, OPTIONAL_NOTE)):
        try:
            resolve_model_folder(name, pipeline_dir, models_dir, hint)
            results.append((name, True, "ok"))
        except ModelNotFoundError as exc:
            results.append((name, False, f"{exc} ({note})" if note else str(exc)))
    return results
