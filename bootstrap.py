#!/usr/bin/env python3
"""Set up and run Genesis from a fresh clone, with the standard library only.

    python3 bootstrap.py start     # set up (first time) and start the app
    python3 bootstrap.py test      # set up (first time) and run the whole test suite
    python3 bootstrap.py install   # set up only

Set-up creates `.venv` at the repository root, installs PyTorch suited to this machine (a CUDA
build where an NVIDIA GPU is present, the CPU build otherwise), the project and the npm packages.
Nothing is ever compiled. Each step is skipped when its inputs have not changed since it last ran.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMPS = ROOT / ".bootstrap-stamps"
NPM_FOLDERS = [ROOT, ROOT / "gui" / "electron"]
TORCH_CUDA_INDEX = "https://download.pytorch.org/whl/cu128"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


DONE: list[str] = []  # what this set-up did or found, printed at its end


def say(message: str) -> None:
    print(f"[genesis] {message}", flush=True)


def record(message: str) -> None:
    DONE.append(message)


def torch_summary(py: Path) -> str:
    """`PyTorch 2.x (CUDA 12.8 build)` or `PyTorch 2.x (CPU build)`, read from the installed package."""
    probe = "import torch; print(torch.__version__, torch.version.cuda or '')"
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True).stdout.split()
    if not out:
        return "PyTorch (version unknown)"
    return f"PyTorch {out[0]} ({'CUDA ' + out[1] if len(out) > 1 else 'CPU'} build)"


def venv_python() -> Path:
    if os.name == "nt":
        return VENV / "Scripts" / "python.exe"
    return VENV / "bin" / "python"


def run(cmd: list[str], **kwargs) -> None:
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def succeeds(cmd: list[str], **kwargs) -> bool:
    return subprocess.run([str(c) for c in cmd], **kwargs).returncode == 0


def digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()


def stamp_matches(name: str, value: str) -> bool:
    f = STAMPS / name
    return f.exists() and f.read_text() == value


def write_stamp(name: str, value: str) -> None:
    STAMPS.mkdir(exist_ok=True)
    (STAMPS / name).write_text(value)


def has_nvidia_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None and succeeds(
        ["nvidia-smi", "-L"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def ensure_venv() -> Path:
    if sys.version_info < (3, 10):  # noqa: UP036 - bootstrap runs on any python3
        sys.exit("Genesis needs Python 3.10 or newer; this is " + platform.python_version())
    py = venv_python()
    if not py.exists():
        say(f"creating the virtual environment in {VENV}")
        run([sys.executable, "-m", "venv", VENV])
        record(
            f"created the virtual environment {VENV.relative_to(ROOT)} (Python {platform.python_version()})"
        )
    else:
        record(f"virtual environment {VENV.relative_to(ROOT)}: already there")
    return py


def ensure_torch(py: Path) -> None:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if succeeds([py, "-c", "import torch"], **quiet):
        record(f"{torch_summary(py)}: already installed")
        return
    install_torch(py, quiet)
    record(f"installed {torch_summary(py)}")


def install_torch(py: Path, quiet: dict) -> None:
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check"]
    gpu = has_nvidia_gpu()
    # A suitable wheel already on this machine (pip's find-links) is the fastest and works offline: install
    # it alone, then let the next step fetch only its small dependencies from the usual index.
    if succeeds([*pip, "--no-index", "--no-deps", "-q", "torch>=2.4"], **quiet):
        if gpu and not succeeds(
            [py, "-c", "import sys, torch; sys.exit(torch.version.cuda is None)"], **quiet
        ):
            say("the PyTorch wheel on this machine is a CPU build but there is an NVIDIA GPU: replacing it")
            run([py, "-m", "pip", "uninstall", "-y", "-q", "torch"])
        else:
            say("installing PyTorch from a wheel already on this machine")
            run([*pip, "-q", "torch>=2.4"])
            return
    # The PyTorch index has the right build for the machine; fail over fast when it cannot be reached.
    fast = ["--retries", "1", "--timeout", "20"]
    if gpu:
        say("NVIDIA GPU found: installing the CUDA build of PyTorch")
        if succeeds([*pip, *fast, "torch>=2.4", "--index-url", TORCH_CUDA_INDEX]):
            return
    elif sys.platform.startswith("linux") or os.name == "nt":
        say("no NVIDIA GPU found: installing the CPU build of PyTorch")
        if succeeds([*pip, *fast, "torch>=2.4", "--index-url", TORCH_CPU_INDEX]):
            return
        if sys.platform.startswith("linux"):
            say(
                f"the PyTorch CPU index ({TORCH_CPU_INDEX}) cannot be reached. The default index's PyTorch for "
                "Linux is the CUDA build: about 3 GB with its NVIDIA libraries, and it runs on the CPU too. "
                "Press Ctrl+C now to stop, or wait for it."
            )
    say("installing PyTorch from the default package index")
    run([*pip, "torch>=2.4"])


def ensure_project(py: Path, dev: bool) -> None:
    extra = ".[dev]" if dev else "."
    key = digest(ROOT / "pyproject.toml") + extra
    dev_key = digest(ROOT / "pyproject.toml") + ".[dev]"  # a dev install also serves `start`
    if (stamp_matches("project", key) or stamp_matches("project", dev_key)) and succeeds(
        [py, "-c", "import trellis2, gui.backend"], cwd=ROOT, stderr=subprocess.DEVNULL
    ):
        record("Genesis and its Python dependencies: up to date")
        return
    say("installing Genesis and its Python dependencies")
    run([py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", extra], cwd=ROOT)
    write_stamp("project", key)
    record(f"installed Genesis (editable) with its Python dependencies{' and the developer tools' * dev}")


def ensure_npm(required: bool) -> None:
    npm = shutil.which("npm")
    for folder in NPM_FOLDERS:
        if not (folder / "package.json").exists():
            continue
        if npm is None:
            if required:
                sys.exit("Node.js and npm are needed for the desktop app and the browser tests.")
            say("npm not found: the desktop window is unavailable, the web UI still works")
            record("npm: not found, so no desktop window (the app opens in the browser)")
            return
        name = "npm-" + hashlib.sha1(str(folder).encode()).hexdigest()[:8]
        key = digest(folder / "package.json", folder / "package-lock.json")
        where = str(folder.relative_to(ROOT)) if folder != ROOT else "."
        if stamp_matches(name, key) and (folder / "node_modules").exists():
            record(f"npm packages in {where}: up to date")
            continue
        say(f"installing npm packages in {where}")
        has_lock = (folder / "package-lock.json").exists()
        cmd = [npm, "ci" if has_lock else "install", "--no-audit", "--no-fund", "--loglevel=error"]
        run(cmd, cwd=folder)
        write_stamp(name, key)
        record(f"installed the npm packages in {where}")
    if npm is not None:
        record(electron_summary())


def electron_summary() -> str:
    """Whether the desktop window can open: Electron is optional, and its binary comes from GitHub at install
    time; when it could not be fetched npm leaves it out without a word."""
    folder = ROOT / "gui" / "electron" / "node_modules" / "electron"
    if (folder / "path.txt").is_file() and (folder / "dist").is_dir():
        return "desktop window (Electron): installed"
    return (
        "desktop window (Electron): its binary could not be downloaded, so `start` opens the app in your "
        "browser instead; everything works there"
    )


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium() -> None:
    """Browser tests drive Debian's headless Chromium; install it where we may."""
    if find_chromium() or os.environ.get("GENESIS_SKIP_BROWSER"):
        return
    apt = shutil.which("apt-get")
    if apt and hasattr(os, "geteuid") and os.geteuid() == 0:
        say("installing Chromium for the browser tests (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run([apt, "update", "-qq"], env=env)
        run([apt, "install", "-y", "-qq", "--no-install-recommends", "chromium"], env=env)
    else:
        say("Chromium not found: browser tests will be skipped (install the 'chromium' package)")


def install(dev: bool) -> Path:
    py = ensure_venv()
    ensure_torch(py)
    ensure_project(py, dev)
    ensure_npm(required=dev)
    say("set up:")
    for line in DONE:
        print(f"  - {line}", flush=True)
    return py


def cmd_test(args: list[str]) -> int:
    py = install(dev=True)
    ensure_chromium()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    code = subprocess.run([str(py), "-m", "pytest", *args], cwd=ROOT, env=env).returncode
    electron_tests = ROOT / "gui" / "electron" / "test"
    if electron_tests.exists() and shutil.which("node"):
        say("running the Electron main-process tests (node --test)")
        node = subprocess.run(["node", "--test", str(electron_tests)], cwd=ROOT / "gui" / "electron")
        code = code or node.returncode
    return code


def cmd_start(args: list[str]) -> int:
    py = install(dev=False)
    command = [str(py), "-m", "gui.backend.launcher", *args]
    if os.name == "posix":  # become the launcher: Ctrl+C and SIGTERM reach the server itself, no orphan
        sys.stdout.flush()
        os.chdir(ROOT)
        os.execv(command[0], command)
    return subprocess.run(command, cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    commands = {"install": lambda a: (install(dev="--dev" in a), 0)[1], "start": cmd_start, "test": cmd_test}
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    try:
        return commands[argv[0]](argv[1:])
    except subprocess.CalledProcessError as exc:
        say(f"a set-up step failed: {' '.join(map(str, exc.cmd))} (exit {exc.returncode})")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
