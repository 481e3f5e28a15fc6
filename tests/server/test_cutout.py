"""`POST /api/preview/cutout`: the cut-out the chosen engine will make, before Generate: the background model in
use, else Fresnel's plain-background segmentation; a clear refusal when no single object can be separated or
nothing can remove the background; transparency kept as it is; the app's own origin only; nothing stored."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from gui.backend import cutout as cutout_module
from gui.backend import models_download

from .conftest import app_in_process, png_bytes

URL = "/api/preview/cutout"


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def object_on_white(size: int = 160) -> bytes:
    """An opaque picture: a red square on a plain white background."""
    image = Image.new("RGB", (size, size), (250, 250, 250))
    image.paste(Image.new("RGB", (size // 3, size // 3), (200, 30, 30)), (size // 3, size // 3))
    return encoded(image)


def noise(size: int = 200) -> bytes:
    """An opaque picture with no plain background and no object (over 64 KiB as a PNG)."""
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return encoded(Image.fromarray(pixels, "RGB"))


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with app_in_process(tmp_path_factory.mktemp("cutout")) as test_client:
        yield test_client


def post(client, image: bytes, engine: str | None = "fresnel", **headers: str):
    data = {"engine": engine} if engine else {}
    return client.post(URL, files={"image": ("photo.png", image, "image/png")}, data=data, headers=headers)


def picture(answer) -> Image.Image:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(answer.content))


def test_an_opaque_picture_on_a_plain_background_is_cut_out_for_fresnel(client):
    cut = picture(post(client, object_on_white()))
    assert cut.mode == "RGBA" and cut.size == (160, 160)
    assert cut.getpixel((5, 5))[3] == 0, "the background is gone"
    assert cut.getpixel((80, 80)) == (200, 30, 30, 255), "the object stays, opaque"
    assert not list((client.app.state.settings.data_dir / "jobs").iterdir()), "a preview stores nothing"


def test_no_single_object_is_a_clear_refusal(client):
    answer = post(client, noise())
    assert answer.status_code == 400, "an upload over 64 KiB is taken like a generate upload"
    error = answer.json()["error"]
    assert error["code"] == "invalid_image" and "no single object could be separated" in error["message"]
    assert "transparent background" in error["message"]


def test_trellis2_without_a_background_model_says_so(client):
    error = post(client, object_on_white(), engine="trellis2").json()["error"]
    assert error["code"] == "invalid_image" and "no background-removal model is installed" in error["message"]
    assert "Image" in error["message"], "it names the engine as the app does"


def test_a_picture_with_transparency_comes_back_as_it_is(client):
    source = Image.open(io.BytesIO(png_bytes((64, 64))))
    cut = picture(post(client, png_bytes((64, 64)), engine="trellis2"))
    assert np.array_equal(np.asarray(cut), np.asarray(source.convert("RGBA")))


def test_bad_requests_and_other_sites_are_refused(client):
    assert post(client, object_on_white(), engine=None).json()["error"]["code"] == "invalid_form"
    assert post(client, object_on_white(), engine="nope").json()["error"]["code"] == "invalid_form"
    assert post(client, b"not a picture").json()["error"]["code"] == "invalid_image"
    answer = post(client, object_on_white(), origin="http://evil.example")
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "origin_not_allowed"
    answer = post(client, object_on_white(), **{"sec-fetch-site": "cross-site"})
    assert answer.status_code == 403
    assert picture(post(client, object_on_white(), origin="http://127.0.0.1")).mode == "RGBA"


class HalfRemover:
    """A stand-in background model: keeps the left half."""

    def __init__(self, folder) -> None:
        self.folder = folder

    def __call__(self, rgb: Image.Image) -> Image.Image:
        alpha = np.zeros((rgb.height, rgb.width), dtype=np.uint8)
        alpha[:, : rgb.width // 2] = 255
        out = rgb.copy()
        out.putalpha(Image.fromarray(alpha, "L"))
        return out


def test_the_background_model_in_use_is_used_for_every_engine_and_let_go_when_idle(tmp_path, monkeypatch):
    import trellis2.pipelines.background_removal as removal

    monkeypatch.setattr(models_download, "background_model", lambda models_dir: "ZhengPeng7/BiRefNet")
    monkeypatch.setattr(removal, "BiRefNet", HalfRemover)
    maker = cutout_module.CutoutMaker(tmp_path, idle_s=0.2)
    image = Image.open(io.BytesIO(object_on_white())).convert("RGB")
    for engine in ("trellis2", "fresnel"):
        alpha = np.asarray(maker.cut_out(image, engine, engine).getchannel("A"))
        assert alpha[:, :80].min() == 255 and alpha[:, 80:].max() == 0, (
            "the model's mask, not the segmentation"
        )
    assert maker._model is not None
    time.sleep(0.6)
    assert maker._model is None, "the model is let go after idle_s without a preview"
