"""A stand-in for the Hugging Face hub on a local port, for the tests and the screenshots (the real hub is not
reachable from them): the two kinds of request `models_download` makes, answered the way huggingface.co does.

- `GET /api/models/{org}/{name}[/revision/{rev}]?blobs=true`: the file list with sizes, git blob ids and, for
  large (LFS) files, SHA-256s.
- `GET /{org}/{name}/resolve/{rev}/{file}`: the file, with HTTP Range; a large file is redirected to a "CDN" on
  another port (another origin, so a client must not send the token there: `cdn_auth` records whether one did).

Gated repositories answer 401 (`X-Error-Code: GatedRepo`) without a token and 403 to a token whose account
has not accepted the licence; an unknown token gets 401 "Invalid credentials in Authorization header". `rate`
throttles file bytes (bytes per second) so that progress, speed and cancel can be watched.

    .venv/bin/python -m tools.fake_hub --rate 200000   # serves the tiny models until Ctrl-C
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_MIN_BYTES = 1024  # files at least this big are "LFS" files: SHA-256 listed, served by the CDN
PIECE_BYTES = 16 * 2**10
ACCEPTED_TOKEN = "hf_fake_token_accepted"  # a token whose account accepted every licence


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    gated: bool = False

    @property
    def sha(self) -> str:
        h = hashlib.sha1()
        for name in sorted(self.files):
            h.update(name.encode() + hashlib.sha1(self.files[name]).digest())
        return h.hexdigest()

    def sibling(self, name: str) -> dict:
        data = self.files[name]
        entry = {
            "rfilename": name,
            "size": len(data),
            "blobId": hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest(),
        }
        if len(data) >= LFS_MIN_BYTES:
            entry["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
        return entry


@dataclass
class FakeHub:
    """`repos`: repo id → FakeRepo; `tokens`: valid token → the gated repos its account accepted."""

    repos: dict[str, FakeRepo]
    tokens: dict[str, set[str]] = field(default_factory=dict)
    rate: float | None = None
    requests: list[tuple[str, str, bool, str]] = field(default_factory=list)  # (method, path, token?, Range)
    cdn_auth: list[bool] = field(default_factory=list)  # per CDN request: did it carry a token?
    corrupt: set[str] = field(default_factory=set)  # file names served with one byte changed

    def __post_init__(self) -> None:
        self._servers = [ThreadingHTTPServer(("127.0.0.1", 0), self._handler(cdn)) for cdn in (False, True)]
        for server in self._servers:
            server.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @classmethod
    def from_models(cls, models_dir: Path, token: str = ACCEPTED_TOKEN, rate: float | None = None) -> FakeHub:
        """A hub serving `repos_from_models(models_dir)`; `token` has accepted every licence."""
        repos = repos_from_models(models_dir)
        return cls(repos, tokens={token: set(repos)}, rate=rate)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    def client_env(self, home: Path) -> dict[str, str]:
        """Environment for a process that is to use this hub (and no token of this machine: `home` becomes
        its huggingface_hub folder)."""
        return {"HF_ENDPOINT": self.url, "HF_TOKEN": "", "HF_HUB_OFFLINE": "0", "HF_HOME": str(home)}

    def start(self) -> FakeHub:
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def served(self, repo: FakeRepo, name: str) -> bytes:
        """The bytes sent for a file: its own, or with the first byte changed when it is in `corrupt`."""
        data = repo.files[name]
        return bytes([data[0] ^ 1]) + data[1:] if name in self.corrupt and data else data

    def _handler(self, cdn: bool):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self.answer(body=False)

            def do_GET(self) -> None:
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                auth = self.headers.get("Authorization", "")
                token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
                path = urlsplit(self.path).path
                hub.requests.append((self.command, path, token is not None, self.headers.get("Range", "")))
                try:
                    if cdn:
                        hub.cdn_auth.append(token is not None)
                        self.cdn(path, body)
                    else:
                        self.api(path, token, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (a cancel)

            def fail(self, status: int, code: str | None = None, message: str = "") -> None:
                payload = json.dumps({"error": message or code or str(status)}).encode()
                self.send_response(status)
                if code:
                    self.send_header("X-Error-Code", code)
                if message:
                    self.send_header("X-Error-Message", message)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def api(self, path: str, token: str | None, body: bool) -> None:
                if token is not None and token not in hub.tokens:
                    return self.fail(401, None, "Invalid credentials in Authorization header")
                info = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/[^/]+)?", path)
                resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                repo_id = unquote((info or resolve).group(1)) if (info or resolve) else None
                repo = hub.repos.get(repo_id) if repo_id else None
                if repo is None:
                    return self.fail(404, "RepoNotFound", "Repository not found")
                if info:
                    blobs = "blobs" in parse_qs(urlsplit(self.path).query)
                    siblings = [repo.sibling(n) if blobs else {"rfilename": n} for n in sorted(repo.files)]
                    gated = "manual" if repo.gated else False
                    return self.json({"id": repo_id, "sha": repo.sha, "gated": gated, "siblings": siblings})
                if repo.gated and token is None:
                    return self.fail(
                        401,
                        "GatedRepo",
                        f"Access to model {repo_id} is restricted. You must be authenticated.",
                    )
                if repo.gated and repo_id not in hub.tokens[token]:
                    return self.fail(
                        403, "GatedRepo", f"Access to model {repo_id} is restricted: accept its conditions."
                    )
                name = unquote(resolve.group(3))
                if name not in repo.files:
                    return self.fail(404, "EntryNotFound", "Entry not found")
                data = hub.served(repo, name)
                if len(data) >= LFS_MIN_BYTES:
                    self.send_response(302)
                    self.send_header("Location", f"{hub.cdn_url}/cdn/{repo_id}/{resolve.group(3)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return self.file(data, body)

            def cdn(self, path: str, body: bool) -> None:
                match = re.fullmatch(r"/cdn/([^/]+/[^/]+)/(.+)", path)
                repo = hub.repos.get(unquote(match.group(1))) if match else None
                name = unquote(match.group(2)) if match else ""
                if repo is None or name not in repo.files:
                    return self.fail(404)
                return self.file(hub.served(repo, name), body)

            def json(self, payload: dict) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def file(self, data: bytes, body: bool) -> None:
                start = 0
                wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
                if wanted and int(wanted.group(1)) < len(data):
                    start = int(wanted.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
                self.end_headers()
                if not body:
                    return
                for offset in range(start, len(data), PIECE_BYTES):
                    piece = data[offset : offset + PIECE_BYTES]
                    self.wfile.write(piece)
                    if hub.rate:
                        time.sleep(len(piece) / hub.rate)

        return Handler


def repos_from_models(models_dir: Path) -> dict[str, FakeRepo]:
    """Every model of the app's list as a fake repository holding the files of a models folder (the tiny models
    of `tools/make_tiny_models.py`), gated where the real one is. The licence-clean BiRefNet is the tiny
    RMBG-2.0 stand-in again (the same architecture), and the background models carry files outside what the app
    fetches (ONNX exports), as the real ones do."""
    from gui.backend.models_download import ALTERNATIVES, model_specs

    def files_of(repo_id: str) -> dict[str, bytes]:
        root = Path(models_dir) / repo_id
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
        }

    repos = {}
    for spec in model_specs():
        files = files_of(ALTERNATIVES.get(spec.repo_id, spec.repo_id))
        if spec.background:
            files["onnx/model.onnx"] = b"not fetched: outside the allow patterns" * 64
        repos[spec.repo_id] = FakeRepo(files, gated=spec.gated)
    return repos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, help="bytes per second per download (default: unthrottled)")
    parser.add_argument("--token", default=ACCEPTED_TOKEN, help="a token that accepted every licence")
    args = parser.parse_args(argv)
    from tools.make_tiny_models import make_tiny_models

    with tempfile.TemporaryDirectory(prefix="fake-hub-") as tmp:
        make_tiny_models(Path(tmp), seed=0)
        hub = FakeHub.from_models(Path(tmp), args.token, args.rate).start()
    print(f"fake hub at {hub.url} (HF_ENDPOINT={hub.url})", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        hub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
