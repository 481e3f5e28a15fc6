"""Take the README screenshots from the real app: docs/screenshots/{main-window,multiview,history}.png.

    .venv/bin/python tools/take_screenshots.py                 # tiny models, a server of its own
    .venv/bin/python tools/take_screenshots.py --url http://127.0.0.1:8000   # a running server (real models)
    .venv/bin/python tools/take_screenshots.py --models-dir models
    .venv/bin/python tools/take_screenshots.py --fast           # docs/screenshots/fast-tab.png
    .venv/bin/python tools/take_screenshots.py --models         # docs/screenshots/models-panel.png
    .venv/bin/python tools/take_screenshots.py --first-start    # docs/screenshots/first-start.png
    .venv/bin/python tools/take_screenshots.py --export-progress   # docs/screenshots/export-progress.png

`--fast` is the first start of a fresh install: an empty models folder, so the app opens on the Fast tab, and a
photo-like input (a held-out procedural object on a plain, lit backdrop with sensor noise, saved as an opaque
JPEG, so the built-in background removal runs) becomes a Fresnel model in the viewer. The photo is kept as
`docs/screenshots/fast-input.jpg`.

`--models` is the Models panel (`docs/screenshots/models-panel.png`) against a fake hub serving the tiny models
(`tools/fake_hub.py`, throttled): two models verified (the licence-clean BiRefNet in use), TRELLIS.2 downloading
with its progress, a gated model that failed for want of a token, one missing. The sizes are the tiny models'.

`--first-start` is the window of a fresh install before anything is dropped in (`first-start.png`): an empty
models folder, so the header says which engines can run, the Fast tab is chosen and one line under the input
says what is missing, with the button to the Models panel.

`--export-progress` is a job caught in its export with its time left (`export-progress.png`): the server of
`tests/server/serve_fake.py` with the real O-Voxel export of an 81,920-face bumpy sphere (many seconds on a CPU);
two jobs of one kind run, so the second one's time left comes from the first one's timings on this machine, and
the picture is taken while it shows "Exporting: baking textures" and "about N s left".

Drives Debian's headless Chromium with playwright-core (tools/screenshots.mjs). With tiny
models the shapes are random-weight blobs: run it against real models for pictures worth showing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.browser_harness import (  # noqa: E402
    SCREENSHOT_SCRIPT,
    missing_browser_tooling,
    run_node_script,
    start_ui_server,
    write_input_image,
)


def view_images(source: Path, folder: Path) -> list[Path]:
    """Four labelled views for the multi-view slots (the object turned and mirrored)."""
    from PIL import Image, ImageOps

    base = Image.open(source).convert("RGBA")
    views = [
        base,
        ImageOps.mirror(base),
        base.rotate(12, resample=Image.BICUBIC),
        base.rotate(-12, resample=Image.BICUBIC),
    ]
    paths = []
    for name, image in zip(("front", "back", "left", "right"), views, strict=True):
        path = folder / f"{name}.png"
        image.save(path)
        paths.append(path)
    return paths


PHOTO_SEED = 111  # a stacked, striped vase from the held-out rules: reads well in a small picture


def photo_like_image(path: Path, seed: int = PHOTO_SEED, size: int = 768) -> Path:
    """An opaque JPEG of a held-out procedural object on a plain backdrop, as a phone photo would show it:
    a soft vertical light gradient, a contact shadow under the object and a little sensor noise."""
    import numpy as np
    import torch
    from PIL import Image, ImageDraw, ImageFilter

    from fresnel.data.render import EVAL_CAMERAS, render, sample_cameras
    from fresnel.data.scenes import EVAL_RULES, sample_scenes

    generator = torch.Generator().manual_seed(seed)
    scenes = sample_scenes(1, generator, EVAL_RULES)
    cameras = sample_cameras(1, generator, EVAL_CAMERAS)
    cameras.distance = cameras.distance * 1.5  # room around the object, as in a photo
    rgba = render(scenes, cameras, size, generator)[0].permute(1, 2, 0).clamp(0, 1).numpy()
    rows = np.linspace(0.0, 1.0, size)[:, None, None]
    backdrop = np.broadcast_to((0.93 - 0.12 * rows) * np.array([1.0, 0.98, 0.95]), (size, size, 3)).copy()
    alpha = rgba[..., 3]
    ys, xs = np.nonzero(alpha > 0.5)
    shadow = Image.new("L", (size, size), 0)
    if len(ys):
        width, bottom = xs.max() - xs.min(), ys.max()
        ellipse = (
            xs.min() + 0.1 * width,
            bottom - 0.04 * width,
            xs.max() - 0.1 * width,
            bottom + 0.04 * width,
        )
        ImageDraw.Draw(shadow).ellipse(ellipse, fill=110)
    shade = np.asarray(shadow.filter(ImageFilter.GaussianBlur(size / 40)), dtype=np.float64)[..., None] / 255
    backdrop *= 1 - 0.5 * shade
    colour = rgba[..., :3] * alpha[..., None] + backdrop * (1 - alpha[..., None])
    colour += np.random.default_rng(seed).normal(0, 0.012, colour.shape)
    Image.fromarray((colour.clip(0, 1) * 255).round().astype(np.uint8), "RGB").save(path, quality=90)
    return path


def fast_tab_screenshot(out: Path) -> int:
    """`fast-tab.png`: a server with an empty models folder, the photo through the Fast tab."""
    out.mkdir(parents=True, exist_ok=True)
    photo = photo_like_image(out / "fast-input.jpg")
    with tempfile.TemporaryDirectory(prefix="genesis-shots-") as tmp:
        (Path(tmp) / "models").mkdir()
        server = start_ui_server(Path(tmp) / "models", Path(tmp) / "data")
        try:
            result = run_node_script(
                SCREENSHOT_SCRIPT, "--url", server.url, "--fast", str(photo), "--out", str(out), timeout_s=900
            )
        finally:
            server.stop()
    print(result.stdout, result.stderr, sep="\n")
    return result.returncode


def first_start_screenshot(out: Path) -> int:
    """`first-start.png`: a server with an empty models folder, nothing dropped in yet."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="genesis-shots-") as tmp:
        (Path(tmp) / "models").mkdir()
        server = start_ui_server(Path(tmp) / "models", Path(tmp) / "data")
        try:
            result = run_node_script(
                SCREENSHOT_SCRIPT, "--url", server.url, "--first-start", "--out", str(out), timeout_s=300
            )
        finally:
            server.stop()
    print(result.stdout, result.stderr, sep="\n")
    return result.returncode


FAKE_SERVER = REPO_ROOT / "tests" / "server" / "serve_fake.py"
# the fake engines' sampling is quick; the real export of the rough sphere takes the time (the bake most of it)
EXPORT_SERVER = (
    str(FAKE_SERVER),
    "--real-export",
    "--mesh",
    "bumpy_sphere",
    "--steps",
    "4",
    "--step-s",
    "0.2",
)


def export_progress_screenshot(out: Path) -> int:
    """`export-progress.png`: the second of two alike jobs of the fake engines, caught baking its textures."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="genesis-shots-") as tmp:
        work = Path(tmp)
        image = write_input_image(work / "vase.png")
        server = start_ui_server(work / "models", work / "data", server=EXPORT_SERVER)
        try:
            result = run_node_script(
                SCREENSHOT_SCRIPT,
                "--url",
                server.url,
                "--export-progress",
                str(image),
                "--out",
                str(out),
                timeout_s=600,
            )
        finally:
            server.stop()
    print(result.stdout, result.stderr, sep="\n")
    return result.returncode


MODELS_RATE = 400_000  # bytes per second: the tiny TRELLIS.2 folder takes about 15 s, time to see it run


def models_panel_screenshot(out: Path) -> int:
    """`models-panel.png`: the panel against the fake hub, some models fetched beforehand."""
    from gui.backend import models_download as md
    from tools.fake_hub import FakeHub
    from tools.make_tiny_models import make_tiny_models

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="genesis-shots-") as tmp:
        work = Path(tmp)
        make_tiny_models(work / "tiny", seed=0)
        with FakeHub.from_models(work / "tiny") as hub:
            for repo in ("microsoft/TRELLIS-image-large", "ZhengPeng7/BiRefNet"):
                md.fetch_model(md.find_spec(repo), work / "models" / repo, None, endpoint=hub.url)
            hub.rate = MODELS_RATE
            server = start_ui_server(work / "models", work / "data", env=hub.client_env(work / "hf-home"))
            try:
                result = run_node_script(
                    SCREENSHOT_SCRIPT, "--url", server.url, "--models", "--out", str(out), timeout_s=300
                )
            finally:
                server.stop()
    print(result.stdout, result.stderr, sep="\n")
    return result.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="use this running server instead of starting one")
    parser.add_argument("--models-dir", type=Path, help="models folder for the server (default: tiny models)")
    parser.add_argument(
        "--image", type=Path, help="input image (default: the tiny models' calibration object)"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots")
    parser.add_argument(
        "--fast", action="store_true", help="only fast-tab.png (a fresh install, empty models)"
    )
    parser.add_argument(
        "--models", action="store_true", help="only models-panel.png (the Models panel, a fake hub)"
    )
    parser.add_argument(
        "--first-start",
        action="store_true",
        help="only first-start.png (a fresh install, nothing dropped in)",
    )
    parser.add_argument(
        "--export-progress",
        action="store_true",
        help="only export-progress.png (a job baking its textures, with its time left)",
    )
    args = parser.parse_args(argv)
    reason = missing_browser_tooling()
    if reason:
        print(f"cannot take screenshots: {reason}", file=sys.stderr)
        return 2
    if args.fast:
        return fast_tab_screenshot(args.out)
    if args.models:
        return models_panel_screenshot(args.out)
    if args.first_start:
        return first_start_screenshot(args.out)
    if args.export_progress:
        return export_progress_screenshot(args.out)
    with tempfile.TemporaryDirectory(prefix="genesis-shots-") as tmp:
        work = Path(tmp)
        image = args.image or write_input_image(work / "object.png")
        views = view_images(image, work)
        server = None
        url = args.url
        if url is None:
            models = args.models_dir
            if models is None:
                from tools.make_tiny_models import make_tiny_models

                models = work / "models"
                make_tiny_models(models, seed=0)
            server = start_ui_server(models, work / "data")
            url = server.url
        try:
            result = run_node_script(
                SCREENSHOT_SCRIPT,
                "--url",
                url,
                "--image",
                str(image),
                "--views",
                ",".join(map(str, views)),
                "--out",
                str(args.out),
                timeout_s=900,
            )
        finally:
            if server is not None:
                server.stop()
    print(result.stdout, result.stderr, sep="\n")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
