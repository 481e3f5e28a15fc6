"""`python -m gui.backend.launcher`: start the job server, then the Electron window (or the web UI in the
default browser when Electron cannot start), and print the address. Closing the window stops the server."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import webbrowser

import uvicorn

from .app import create_app
from .cli import add_server_flags, settings_from
from .config import DEFAULT_PORT, REPO_ROOT
from .server import AnnouncingServer

ELECTRON_DIR = REPO_ROOT / "gui" / "electron"
ELECTRON_EARLY_EXIT_S = 5.0


def electron_binary():
    name = "electron.cmd" if os.name == "nt" else "electron"
    path = ELECTRON_DIR / "node_modules" / ".bin" / name
    return path if path.exists() else None


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def open_browser(url: str) -> None:
    opened = False
    try:
        opened = webbrowser.open(url)
    except Exception:  # noqa: BLE001 - no browser is not an error: the address is printed
        opened = False
    print(
        f"Open {url} in your browser." if not opened else f"Opened the web UI in your browser: {url}",
        flush=True,
    )


def run_window(
    server: AnnouncingServer, force_browser: bool, windows: list[subprocess.Popen] | None = None
) -> None:
    """Wait for the server, then show the UI; when the Electron window closes, stop the server. The window's
    process is added to `windows`, so that stopping the server closes it too."""
    while not server.started and not server.should_exit:
        time.sleep(0.1)
    if server.should_exit or server.url is None:
        return
    electron = None if force_browser else electron_binary()
    if electron is None:
        if not force_browser:
            print(
                "The desktop window (Electron) is not installed on this machine; the app opens in your browser."
            )
        open_browser(server.url)
        return
    try:
        env = {**os.environ, "GENESIS_TOKEN": server.settings.token} if server.settings.token else None
        proc = subprocess.Popen(
            [str(electron), str(ELECTRON_DIR), f"--backend-url={server.url}"], cwd=ELECTRON_DIR, env=env
        )
        if windows is not None:
            windows.append(proc)
    except OSError as exc:
        print(f"The desktop window could not start ({exc}); using the browser.", flush=True)
        open_browser(server.url)
        return
    started = time.monotonic()
    code = proc.wait()
    if code != 0 and time.monotonic() - started < ELECTRON_EARLY_EXIT_S:
        print(f"The desktop window exited at once (code {code}); using the browser instead.", flush=True)
        open_browser(server.url)
        return
    server.should_exit = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="genesis-start", description=__doc__)
    add_server_flags(parser)
    parser.add_argument(
        "--no-window", action="store_true", help="only run the server (no window, no browser)"
    )
    parser.add_argument("--browser", action="store_true", help="open the web UI in the browser, not Electron")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    explicit_port = any(
        a == "--port" or a.startswith("--port=") for a in (argv if argv is not None else sys.argv)
    )
    settings = settings_from(args)
    if not explicit_port and settings.port == DEFAULT_PORT and not port_is_free(settings.host, settings.port):
        settings.port = 0  # another app holds the usual port: take any free one (the address is printed)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings.ensure_token()
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = AnnouncingServer(config, settings)
    windows: list[subprocess.Popen] = []
    if not args.no_window:
        threading.Thread(target=run_window, args=(server, args.browser, windows), daemon=True).start()
    try:
        server.run()
    finally:
        for window in windows:  # the server stopped (Ctrl+C, SIGTERM): the window goes with it
            if window.poll() is None:
                window.terminate()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
