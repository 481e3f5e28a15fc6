"""The repository keeps the promises of its README: two commands, CI runs the test command."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    last = [ln for ln in ci_lines if ln and not ln.startswith("#")][-1]
    assert last == "python3 bootstrap.py test"
    assert last in (ROOT / "README.md").read_text()


def test_readme_gives_the_start_command():
    assert "python3 bootstrap.py start" in (ROOT / "README.md").read_text()


def test_windows_wrappers_are_thin():
    for name in ("install.ps1", "Start-App.ps1"):
        text = (ROOT / name).read_text()
        assert "bootstrap.py" in text and len(text.splitlines()) < 10
