"""The teacher data on disk: which inputs there are, what is stored per image and seed, what is done.

    <teacher>/settings.json          pipeline type and student crop size the data was made with
    <teacher>/failures.jsonl         one line per failed input: {"item", "reason", "at"}
    <teacher>/items/<id>/views.npz   the student's input crops, one per view (uint8 [V, 4, S, S])
    <teacher>/items/<id>/seed-<n>.npz    the targets of one teacher run (`targets.TeacherRecord`)
    <teacher>/items/<id>/done.json   written last: the seeds, timings and mesh statistics
    <teacher>/items/<id>/failed.json the reason an input was given up

An *item* is one image in the images folder, or one sub-folder of images (the views of one object, given to
the multi-view pipeline). Every file is written under a temporary name and renamed, so a run killed at any
moment leaves only whole files; an item counts as done only when its `done.json` names every wanted seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
SETTINGS_FILE = "settings.json"
FAILURES_FILE = "failures.jsonl"
VIEWS_FILE = "views.npz"
DONE_FILE = "done.json"
FAILED_FILE = "failed.json"
SEED_BITS = 31  # seeds fit the app's seed field (0 .. 2**31 - 1)


@dataclass(frozen=True)
class Item:
    """One input: its folder name under `items/` and its view(s), in order."""

    id: str
    views: tuple[Path, ...]

    @property
    def label(self) -> str:
        return self.views[0].name if len(self.views) == 1 else f"{self.views[0].parent.name}/"


def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def find_items(images_dir: Path) -> list[Item]:
    """The images of `images_dir` and its sub-folders of images (multi-view sets), sorted by name; ids are the
    names with unsafe characters replaced (a clash gets a numbered suffix)."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"the images folder {images_dir} does not exist")
    items, used = [], set()
    for entry in sorted(images_dir.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            views = tuple(p for p in sorted(entry.iterdir()) if _is_image(p))
        elif _is_image(entry):
            views = (entry,)
        else:
            continue
        if not views:
            continue
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", entry.name).strip("._") or "item"
        item_id, n = base, 2
        while item_id in used:
            item_id, n = f"{base}-{n}", n + 1
        used.add(item_id)
        items.append(Item(item_id, views))
    return items


def item_seeds(item_id: str, count: int) -> list[int]:
    """The teacher's seeds for an item: distinct per item and index (every image brings its own noise)."""
    seeds = []
    for k in range(count):
        digest = hashlib.sha256(f"{item_id}/{k}".encode()).digest()
        seeds.append(int.from_bytes(digest[:8], "little") % 2**SEED_BITS)
    return seeds


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` into a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, lambda p: p.write_text(json.dumps(data, indent=1) + "\n"))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    write_atomic(path, write)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


class TeacherStore:
    """The teacher-data folder: item folders, settings, failures and what is done."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def item_dir(self, item_id: str) -> Path:
        return self.root / "items" / item_id

    def seed_file(self, item_id: str, seed: int) -> Path:
        return self.item_dir(item_id) / f"seed-{seed}.npz"

    def check_settings(self, settings: dict) -> None:
        """Record the settings of new teacher data; refuse to add to data made with other ones."""
        path = self.root / SETTINGS_FILE
        if path.is_file():
            old = json.loads(path.read_text())
            if old != settings:
                raise ValueError(
                    f"the teacher data in {self.root} was made with {old}, not {settings}; "
                    "use another name, or the same settings"
                )
            return
        write_json(path, settings)

    def done(self, item_id: str) -> dict | None:
        path = self.item_dir(item_id) / DONE_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def failed(self, item_id: str) -> dict | None:
        path = self.item_dir(item_id) / FAILED_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def is_done(self, item_id: str, seeds: list[int]) -> bool:
        record = self.done(item_id)
        return record is not None and set(seeds) <= set(record["seeds"])

    def record_failure(self, item: Item, reason: str) -> None:
        """Give the item up: `failed.json` (so a resumed run skips it) and a line in `failures.jsonl`."""
        entry = {"item": item.id, "views": [str(v) for v in item.views], "reason": reason, "at": time.time()}
        write_json(self.item_dir(item.id) / FAILED_FILE, entry)
        with open(self.root / FAILURES_FILE, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def failures(self) -> list[dict]:
        path = self.root / FAILURES_FILE
        return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []

    def done_items(self) -> list[tuple[str, dict]]:
        """`(item id, done record)` of every finished item, by id."""
        folder = self.root / "items"
        if not folder.is_dir():
            return []
        found = [(d.name, self.done(d.name)) for d in sorted(folder.iterdir()) if d.is_dir()]
        return [(item_id, record) for item_id, record in found if record is not None]

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
