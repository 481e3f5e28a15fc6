"""Take the README screenshots from the real app: docs/screenshots/{main-window,multiview,history}.png.

    .venv/bin/python tools/take_screenshots.py                 # tiny models, a server of its own
    .venv/bin/python tools/take_screenshots.py --url http://127.0.0.1:8000   # a running server (real models)
    .venv/bin/python tools/take_screenshots.py --models-dir models

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
    args = parser.parse_args(argv)
    reason = missing_browser_tooling()
    if reason:
        print(f"cannot take screenshots: {reason}", file=sys.stderr)
        return 2
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
