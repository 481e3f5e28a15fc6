"""Export settings through the server, the export module and the CLI (issue 12): alpha mode, asset names, the
STL / PLY up axis, STL / PLY without texture baking, one export file per setting.

The server runs the real O-Voxel export on a small box engine (`box_engines`, defined here and loaded by the
server's worker process): seed 0 gives a model that is solid everywhere, `SEE_THROUGH_SEED` one whose -x half
has alpha 0.25.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from pydantic import ValidationError

from gui.backend import cli
from gui.backend.export import asset_name, export_file_name, export_generation
from gui.backend.files import FILE_NAME_PATTERN
from gui.backend.params import MAX_NAME, ExportParams, ExportRequest
from gui.backend.vocabulary import alpha_modes, z_up_axes
from o_voxel.asset import MeshWithVoxel
from tests.o_voxel.ov_gltf_validator import assert_valid_glb

from .conftest import LiveServer, png_bytes
from .fake_engine import FakeEngine

SEE_THROUGH_SEED = 1
BOX_SIZE, BOX_CENTRE = (0.2, 0.3, 0.45), (0.05, -0.05, 0.02)  # O-Voxel frame (z-up): tallest along z
RESOLUTION = 16
QUICK = {"texture_size": 512, "decimation_target": 10000, "remesh": False}
BOX_FACES = [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1]]
BOX_FACES += [[2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
SERVE = """
import argparse
from gui.backend.cli import add_server_flags, settings_from
from gui.backend.server import serve
from gui.backend.worker_process import EngineSpec
parser = argparse.ArgumentParser()
add_server_flags(parser)
serve(settings_from(parser.parse_args()), EngineSpec("tests.server.test_export_settings:box_engines"))
"""


# -- the box engine ------------------------------------------------------------------------------------------
def voxel_attributes(alpha: torch.Tensor | float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every voxel of the grid with base colour = its grid position / resolution, metallic and roughness 0.5."""
    grid = torch.stack(torch.meshgrid(*[torch.arange(RESOLUTION)] * 3, indexing="ij"), -1).reshape(-1, 3)
    alpha = torch.as_tensor(alpha, dtype=torch.float32).expand(len(grid)).reshape(-1, 1)
    attrs = torch.cat([grid.float() / RESOLUTION, torch.full((len(grid), 2), 0.5), alpha], dim=1)
    return grid.int(), attrs


def box_mesh(see_through: bool = False) -> MeshWithVoxel:
    """An axis-aligned box of `BOX_SIZE` (12 faces); `see_through`: alpha 0.25 on the voxels of its -x half."""
    unit = torch.tensor([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=torch.float32)
    size, centre = torch.tensor(BOX_SIZE), torch.tensor(BOX_CENTRE)
    corners = centre - size / 2 + unit * size
    coords, _ = voxel_attributes()
    alpha = torch.where(coords[:, 0] < RESOLUTION // 2, 0.25, 1.0) if see_through else 1.0
    coords, attrs = voxel_attributes(alpha)
    faces = torch.tensor(BOX_FACES, dtype=torch.int32)
    return MeshWithVoxel(corners, faces, coords, attrs, voxel_size=1.0 / RESOLUTION)


class BoxEngine(FakeEngine):
    """Answers at once with `box_mesh` (see-through for `SEE_THROUGH_SEED`)."""

    def run(self, request, progress, cancel):
        progress("sampling", 1, 1)
        return [box_mesh(see_through=request.params.seed == SEE_THROUGH_SEED)]


def box_engines(models_dir=None, device=None) -> dict[str, FakeEngine]:
    """The engine factory the test server's worker builds (`EngineSpec` of `box_server`)."""
    return {
        "trellis2": BoxEngine("trellis2"),
        "multiview": BoxEngine("multiview"),
        "fresnel": FakeEngine("fresnel", ready=False),
    }


# -- helpers -------------------------------------------------------------------------------------------------
def glb_json(data: bytes) -> dict:
    """The JSON chunk of a binary glTF."""
    magic, _, _ = struct.unpack_from("<III", data, 0)
    length, kind = struct.unpack_from("<II", data, 12)
    assert magic == 0x46546C67 and kind == 0x4E4F534A
    return json.loads(data[20 : 20 + length])


def glb_bounds(gltf: dict) -> np.ndarray:
    """`[[min], [max]]` of the POSITION accessor (y-up, as glTF stores it)."""
    position = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    return np.array([position["min"], position["max"]])


def names_of(gltf: dict) -> dict[str, list[str]]:
    """The names of every material, texture, image, sampler, mesh and node."""
    kinds = ("materials", "textures", "images", "samplers", "meshes", "nodes")
    return {kind: [item.get("name") for item in gltf.get(kind, [])] for kind in kinds}


def z_up_from_y_up(bounds: np.ndarray) -> np.ndarray:
    """glTF y-up bounds as z-up bounds: (x, y, z) -> (x, -z, y)."""
    lo, hi = bounds
    return np.array([[lo[0], -hi[2], lo[1]], [hi[0], -lo[2], hi[1]]])


def ply_header(data: bytes) -> list[str]:
    return data[: data.index(b"end_header")].decode().splitlines()


@pytest.fixture(scope="module")
def box_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("export-settings")
    where = ["--data-dir", str(data), "--models-dir", str(data / "models"), "--device", "cpu"]
    server = LiveServer([sys.executable, "-c", SERVE, "--port", "0", *where], data)
    yield server
    server.stop()


def generate(server: LiveServer, **params) -> dict:
    """A finished job of the box engine with `QUICK` export settings plus `params`."""
    files = {"image": ("box.png", png_bytes(), "image/png")}
    r = server.client.post(
        "/api/generate/image", files=files, data={"params": json.dumps({**QUICK, **params})}
    )
    assert r.status_code == 202, r.text
    job = server.wait_state(r.json()["job_id"], ("succeeded", "failed", "cancelled"), timeout=120)
    assert job["state"] == "succeeded", job.get("error")
    return job


def export(server: LiveServer, job: dict, tmp_path: Path, **settings) -> tuple[dict, bytes]:
    """Re-export `job` with `QUICK` plus `settings`; the result and the file's bytes (also kept in tmp_path)."""
    r = server.client.post(f"/api/jobs/{job['id']}/export", json={**QUICK, **settings}, timeout=120)
    assert r.status_code == 200, r.text
    data = server.client.get(r.json()["url"]).content
    (tmp_path / r.json()["name"]).write_bytes(data)
    return r.json(), data


@pytest.fixture(scope="module")
def jobs(box_server: LiveServer) -> dict[str, dict]:
    """One solid job named by its client, one see-through job without a name."""
    return {
        "solid": generate(box_server, seed=0, name="My chair (v2)"),
        "see_through": generate(box_server, seed=SEE_THROUGH_SEED),
    }


def model_glb(server: LiveServer, job: dict) -> bytes:
    return server.client.get(job["result"]["model"]).content


# -- through the server --------------------------------------------------------------------------------------
def test_auto_alpha_follows_the_model(box_server: LiveServer, jobs, tmp_path):
    solid, see_through = model_glb(box_server, jobs["solid"]), model_glb(box_server, jobs["see_through"])
    assert "alphaMode" not in glb_json(solid)["materials"][0]  # OPAQUE, the glTF default
    assert glb_json(see_through)["materials"][0]["alphaMode"] == "BLEND"
    _, again = export(box_server, jobs["solid"], tmp_path, format="glb", alpha_mode="auto")
    assert glb_json(again)["materials"][0].get("alphaMode", "OPAQUE") == "OPAQUE"
    (tmp_path / "solid.glb").write_bytes(solid)
    (tmp_path / "see-through.glb").write_bytes(see_through)
    assert_valid_glb(*sorted(tmp_path.glob("*.glb")))


def test_the_chosen_alpha_mode_passes_through(box_server: LiveServer, jobs, tmp_path):
    _, blend = export(box_server, jobs["solid"], tmp_path, format="glb", alpha_mode="BLEND")
    assert glb_json(blend)["materials"][0]["alphaMode"] == "BLEND"
    _, mask = export(
        box_server, jobs["see_through"], tmp_path, format="glb", alpha_mode="mask", alpha_cutoff=0.3
    )
    material = glb_json(mask)["materials"][0]
    assert material["alphaMode"] == "MASK" and material["alphaCutoff"] == pytest.approx(0.3)
    _, opaque = export(box_server, jobs["see_through"], tmp_path, format="glb", alpha_mode="OPAQUE")
    assert "alphaMode" not in glb_json(opaque)["materials"][0]
    assert_valid_glb(*sorted(tmp_path.glob("*.glb")))


def test_a_bad_alpha_mode_is_refused(box_server: LiveServer, jobs):
    r = box_server.client.post(f"/api/jobs/{jobs['solid']['id']}/export", json={"alpha_mode": "sometimes"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_parameters"
    assert "alpha_mode" in r.json()["error"]["message"]


def test_everything_in_the_glb_is_named_after_the_job(box_server: LiveServer, jobs, tmp_path):
    assert jobs["solid"]["params"]["name"] == "My_chair_v2"  # sanitised when the job was submitted
    for data in (
        model_glb(box_server, jobs["solid"]),
        export(box_server, jobs["solid"], tmp_path, name="Chair")[1],
    ):
        names = names_of(glb_json(data))
        expected = names["meshes"][0]
        assert expected in ("genesis_My_chair_v2", "genesis_Chair")
        assert names["materials"] == names["nodes"] == [expected]
        assert names["samplers"] == [f"{expected}_sampler"]
        assert names["textures"] and all(
            n.startswith(f"{expected}_") for n in names["textures"] + names["images"]
        )


def test_a_re_export_without_a_name_keeps_the_jobs_name(box_server: LiveServer, jobs, tmp_path):
    _, data = export(box_server, jobs["solid"], tmp_path, format="glb", alpha_mode="MASK")
    assert names_of(glb_json(data))["meshes"] == ["genesis_My_chair_v2"]


def test_each_setting_gets_its_own_file(box_server: LiveServer, jobs, tmp_path):
    job = jobs["see_through"]
    results = {
        mode: export(box_server, job, tmp_path, format="glb", alpha_mode=mode)[0]["name"]
        for mode in ("auto", "BLEND", "OPAQUE")
    }
    assert len(set(results.values())) == 3
    assert export(box_server, job, tmp_path, format="glb", alpha_mode="BLEND")[0]["name"] == results["BLEND"]
    stl = {
        axis: export(box_server, job, tmp_path, format="stl", up_axis=axis)[0]["name"] for axis in z_up_axes()
    }
    assert len(set(stl.values())) == len(z_up_axes())


def test_stl_and_ply_stand_upright_and_skip_the_bake(box_server: LiveServer, jobs, tmp_path):
    job = jobs["solid"]
    bounds = glb_bounds(glb_json(model_glb(box_server, job)))
    assert np.argmax(bounds[1] - bounds[0]) == 1  # y-up glTF: the box's height is along y
    _, stl = export(box_server, job, tmp_path, format="stl")
    _, ply = export(box_server, job, tmp_path, format="ply")
    _, stl_y = export(box_server, job, tmp_path, format="stl", up_axis="y")
    load = lambda data, kind: trimesh.load(trimesh.util.wrap_as_stream(data), file_type=kind, process=False)  # noqa: E731
    for data, kind in ((stl, "stl"), (ply, "ply")):
        mesh = load(data, kind)
        assert np.allclose(mesh.bounds, z_up_from_y_up(bounds), atol=1e-5), kind
        assert np.argmax(mesh.extents) == 2, f"{kind} is z-up: the height is along z"
    assert np.allclose(load(stl_y, "stl").bounds, bounds, atol=1e-5)

    header = ply_header(ply)
    assert "element vertex 8" in header  # the welded box: no UV seams, so no unwrap and no bake
    for prop in ("float nx", "uchar red", "uchar green", "uchar blue", "uchar alpha"):
        assert f"property {prop}" in header
    mesh = load(ply, "ply")
    colours = np.asarray(mesh.visual.vertex_colors, dtype=np.float64) / 255.0
    assert np.all(colours[:, 3] == 1.0)  # solid everywhere
    # base colour = voxel grid position / resolution: about the z-up position + 0.5 - 1/32 at each vertex
    assert np.allclose(colours[:, :3], np.asarray(mesh.vertices) + 0.5 - 0.5 / RESOLUTION, atol=0.04)


def test_the_cli_exports_with_the_new_flags_and_keeps_the_jobs_name(
    box_server: LiveServer, jobs, tmp_path, capsys
):
    out = tmp_path / "cli.glb"
    where = ["--data-dir", str(box_server.data_dir), "--device", "cpu"]
    args = ["export", jobs["solid"]["id"], *where, "--texture-size", "512", "--decimation-target", "10000"]
    assert cli.main([*args, "--no-remesh", "--alpha-mode", "blend", "--out", str(out)]) == 0
    gltf = glb_json(out.read_bytes())
    assert gltf["materials"][0]["alphaMode"] == "BLEND" and gltf["meshes"][0]["name"] == "genesis_My_chair_v2"
    assert cli.main([*args, "--alpha-mode", "never"]) == 2
    assert "alpha_mode" in capsys.readouterr().err


# -- in this process -----------------------------------------------------------------------------------------
def folded_sheet() -> MeshWithVoxel:
    """A 0.4 x 0.4 square with a small flap folded back 170 degrees over one edge: the flap's area-weighted
    corner normals point away from its winding (what the tiny pipeline's meshes have, and what made the STL
    re-export of the end-to-end test fail with HTTP 500 before the fold split)."""
    angle, flap = math.radians(170.0), 0.05
    vertices = [[-0.2, -0.2, 0.0], [0.2, -0.2, 0.0], [0.2, 0.2, 0.0], [-0.2, 0.2, 0.0]]
    vertices.append([0.2 + flap * math.cos(angle), 0.0, flap * math.sin(angle)])
    coords, attrs = voxel_attributes()
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [2, 1, 4]], dtype=torch.int32)
    return MeshWithVoxel(torch.tensor(vertices), faces, coords, attrs, voxel_size=1.0 / RESOLUTION)


def test_a_folded_mesh_exports_as_stl_and_ply(tmp_path):
    import cumesh

    mesh = folded_sheet()
    faces = mesh.faces.long()
    assert cumesh.check_topology(
        mesh.vertices, faces, cumesh.vertex_normals(mesh.vertices, faces)
    ).normal_mismatch
    params = ExportParams(**QUICK)
    for fmt in ("stl", "ply"):
        stats = export_generation([mesh], params, fmt, tmp_path / f"fold.{fmt}")
        assert stats["faces"] == 3 and (tmp_path / f"fold.{fmt}").stat().st_size > 0


def test_stl_and_ply_never_bake(tmp_path, monkeypatch):
    import o_voxel.postprocess

    def no_bake(*args, **kwargs):
        raise AssertionError("to_glb (unwrap + bake) was called")

    monkeypatch.setattr(o_voxel.postprocess, "to_glb", no_bake)
    for fmt in ("stl", "ply"):
        export_generation([box_mesh()], ExportParams(**QUICK), fmt, tmp_path / f"box.{fmt}")
    with pytest.raises(AssertionError, match="to_glb"):
        export_generation([box_mesh()], ExportParams(**QUICK), "glb", tmp_path / "box.glb")


def test_export_file_names_hold_every_setting_that_changes_the_file():
    def name(fmt: str, **changes) -> str:
        return export_file_name(fmt, ExportRequest(**{**QUICK, **changes}))

    for fmt in ("glb", "obj"):
        variants = [name(fmt, alpha_mode=m) for m in alpha_modes()]
        variants += [
            name(fmt, alpha_mode="MASK", alpha_cutoff=0.25),
            name(fmt, name="chair"),
            name(fmt, texture_size=1024),
        ]
        assert len(set(variants)) == len(variants), variants
        assert name(fmt, up_axis="y") == name(fmt)  # GLB and OBJ keep their own (y-up) convention
        assert name(fmt, alpha_cutoff=0.25) == name(fmt)  # the cutoff only matters for MASK
    for fmt in ("stl", "ply"):
        assert len({name(fmt, up_axis=axis) for axis in z_up_axes()}) == len(z_up_axes())
        assert name(fmt, alpha_mode="BLEND", texture_size=4096) == name(fmt)  # no texture: neither applies
    longest = name("obj", decimation_target=2_000_000, alpha_mode="MASK", alpha_cutoff=1 / 3, name="x" * 99)
    assert FILE_NAME_PATTERN.match(longest), longest


def test_names_are_sanitised_and_default_to_the_job():
    assert ExportParams(name="  My chair (v2).png ").name == "My_chair_v2_png"
    assert ExportParams(name="../../etc").name == "etc"
    assert ExportParams(name="***").name is None
    assert len(ExportParams(name="a" * 500).name) == MAX_NAME
    job_folder = Path("/data/jobs") / ("0123abcd" * 4)
    assert asset_name(ExportParams(), job_folder / "model.glb") == "genesis_0123abcd"
    assert asset_name(ExportParams(name="chair"), job_folder / "model.glb") == "genesis_chair"
    assert asset_name(ExportParams(), Path("/tmp/model.glb")) == "genesis"


def test_alpha_mode_and_up_axis_come_from_o_voxel():
    from o_voxel.export import ALPHA_MODES, UP_AXES

    assert alpha_modes() == tuple(ALPHA_MODES) and z_up_axes() == UP_AXES["stl"] == UP_AXES["ply"]
    assert ExportParams(alpha_mode="blend").alpha_mode == "BLEND"
    assert ExportParams(up_axis="Y").up_axis == "y" and ExportParams().up_axis == "z"
    with pytest.raises(ValidationError):
        ExportParams(up_axis="x")
    with pytest.raises(ValidationError):
        ExportParams(alpha_cutoff=1.5)
