"""`genesis export JOB`: a unique start of a job id is enough (an ambiguous one lists the candidates), and the
export shows its progress with the app's stage names, as `genesis generate` does."""

from __future__ import annotations

import sys

import pytest
from PIL import Image

from gui.backend import cli
from gui.backend.images import store_inputs
from gui.backend.params import GenerateParams
from gui.backend.store import SUCCEEDED

from .test_units import make_worker

IDS = ("abc" + "0" * 29, "abd" + "0" * 29, "f00" + "1" * 29)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Three finished jobs of the fake engine, whose ids share starts."""
    folder = tmp_path_factory.mktemp("cli-export")
    worker, _ = make_worker(folder)
    for job_id in IDS:
        names = store_inputs(worker.folders, job_id, [Image.new("RGBA", (32, 32), (255, 0, 0, 255))])
        params = GenerateParams(texture_size=512, decimation_target=10_000, remesh=False).model_dump()
        job = worker.store.create("trellis2", params, names, job_id=job_id)
        assert worker.run_job(job).state == SUCCEEDED
    return folder


def export(data_dir, given: str, *flags: str) -> int:
    return cli.main(["export", given, "--data-dir", str(data_dir), "--device", "cpu", *flags])


def test_a_unique_start_of_an_id_is_enough(data_dir, capsys):
    assert export(data_dir, "abc", "--format", "ply") == 0
    out = capsys.readouterr().out
    assert f"job {IDS[0]}" in out and out.strip().splitlines()[-1].endswith(".ply")
    assert export(data_dir, " F00 ", "--format", "stl") == 0, "case and spaces do not matter"
    assert IDS[2] in capsys.readouterr().out


def test_an_ambiguous_or_unknown_start_says_so(data_dir, capsys):
    assert export(data_dir, "ab") == 2
    err = capsys.readouterr().err
    assert "2 jobs start with 'ab'" in err and IDS[0] in err and IDS[1] in err and IDS[2] not in err
    for given in ("abe", "zz", ""):
        assert export(data_dir, given) == 2
        assert f"no job {given!r}" in capsys.readouterr().err


def test_the_export_shows_its_stages_in_the_apps_words(data_dir, capsys, monkeypatch):
    assert (
        export(data_dir, "abd", "--texture-size", "512", "--decimation-target", "10000", "--no-remesh") == 0
    )
    lines = capsys.readouterr().out.splitlines()
    stages = [line.split("% ", 1)[1] for line in lines if "% " in line]
    assert "Exporting: unwrapping UVs" in stages and "Exporting: baking textures" in stages, lines
    assert len(stages) == len(set(stages)), "a log gets one line per stage"
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert export(data_dir, "abd", "--format", "ply") == 0
    out = capsys.readouterr().out
    assert "\r[" in out and "Exporting: colouring vertices" in out and "100.0%" in out, (
        "a terminal gets the bar"
    )
