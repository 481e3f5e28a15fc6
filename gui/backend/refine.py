"""Draft to final: a Fast (Fresnel) job keeps its sparse structure, and Refine runs TRELLIS.2 on the same
input with that structure and the same seed, so the final model keeps the draft's silhouette and proportions.

The structure is the draft's sparse structure (`[G, G, G]` booleans in the O-Voxel frame TRELLIS.2 samples in:
the voxels the surface of its upright occupancy passes, `fresnel.surface.surface_shell`),
stored bit-packed beside the job's other files. A refine job is a TRELLIS.2 job with `structure: "fresnel"`
and `draft_job` naming its draft; its folder gets copies of the draft's inputs and structure.
"""

from __future__ import annotations

import io
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ApiError
from .files import PREVIEW_FILE, JobFolders
from .store import SUCCEEDED, Job, JobStore

STRUCTURE_FILE = "structure.npz"  # a job's sparse structure (Fast jobs; refine jobs get their draft's)
DRAFT_ENGINE = "fresnel"
REFINE_ENGINE = "trellis2"


def save_structure(folders: JobFolders, job_id: str, occupancy: torch.Tensor) -> None:
    """Write `occupancy` (`[G, G, G]` bool) as the job's structure file, atomically."""
    grid = occupancy.detach().bool().cpu().numpy()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, shape=np.array(grid.shape), bits=np.packbits(grid.reshape(-1)))
    folders.write_bytes(job_id, STRUCTURE_FILE, buffer.getvalue())


def load_structure(folders: JobFolders, job_id: str) -> torch.Tensor | None:
    """The job's structure (`[G, G, G]` bool), or None when it has none."""
    path = folders.path(job_id, STRUCTURE_FILE)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        shape = tuple(int(n) for n in data["shape"])
        bits = np.unpackbits(data["bits"])[: int(np.prod(shape))]
    return torch.from_numpy(bits.reshape(shape).astype(bool))


def check_draft(folders: JobFolders, draft: Job) -> None:
    """Refuse, with the reason, a job that cannot be refined."""
    if draft.engine != DRAFT_ENGINE:
        raise ApiError("job_not_draft", "Only a Fast (Fresnel) job can be refined.")
    if draft.state != SUCCEEDED:
        raise ApiError("job_not_succeeded", f"Only a finished job can be refined; this one is {draft.state}.")
    if not folders.path(draft.id, STRUCTURE_FILE).is_file():
        raise ApiError(
            "job_not_draft", "This Fast job was made before drafts kept their structure; generate it again."
        )


def refine_params(draft: Job, overrides: dict[str, Any]) -> dict[str, Any]:
    """The refine job's parameters before validation: the draft's seed and name, the structure from the draft,
    then what the request sets (e.g. the pipeline type)."""
    params = {key: draft.params[key] for key in ("seed", "name") if draft.params.get(key) is not None}
    return {**params, **overrides, "structure": "fresnel", "draft_job": draft.id}


def create_refine_job(store: JobStore, folders: JobFolders, draft: Job, params: dict[str, Any]) -> Job:
    """A queued TRELLIS.2 job with copies of the draft's inputs and structure; `params` already validated."""
    job_id = uuid.uuid4().hex
    names = [name for name in draft.inputs if name.startswith("input_") or name == PREVIEW_FILE]
    try:
        for name in [*names, STRUCTURE_FILE]:
            target: Path = folders.path(job_id, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folders.path(draft.id, name), target)
        return store.create(REFINE_ENGINE, params, names, job_id=job_id)
    except BaseException:
        folders.remove(job_id)
        raise
