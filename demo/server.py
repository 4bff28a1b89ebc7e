"""``ondevice-rec demo``: a static page that runs the published ``.tflite`` in the browser (LiteRT.js, WebAssembly).

The server only hands out files: the page (``demo/static``), the LiteRT.js runtime installed from npm by
``./setup.sh`` (``demo/node_modules``, served from here: no CDN), and the published model folder's
``model.tflite``, ``metadata.json`` and vocabulary. Recommendations are computed in the page; the picked
history never reaches the server. Every URL maps to an allowed file explicitly; nothing else is served.
"""

from __future__ import annotations

import http.server
import json
import mimetypes
import os
import posixpath
import urllib.parse
from typing import Dict, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC_DIR = os.path.join(HERE, "static")
NODE_MODULES = os.path.join(HERE, "node_modules")
# URL prefix -> folder; only files below these folders are served.
VENDOR = {
    "/vendor/litert/": os.path.join(NODE_MODULES, "@litertjs", "core"),
    "/vendor/wasm-utils/": os.path.join(NODE_MODULES, "@litertjs", "wasm-utils"),
}
MIME = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
        ".html": "text/html; charset=utf-8", ".css": "text/css", ".tflite": "application/octet-stream"}


def check_runtime() -> None:
    for folder in VENDOR.values():
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"the LiteRT.js web runtime is not installed ({folder} missing): run ./setup.sh "
                                    "(it runs `npm ci` in demo/)")


def model_files(model_dir: str) -> Dict[str, str]:
    """``{url: path}`` of the published model folder's files the page needs."""
    metadata_path = os.path.join(model_dir, "metadata.json")
    if not os.path.isfile(metadata_path):
        raise FileNotFoundError(f"{model_dir} is not a published model folder (no metadata.json); pass e.g. "
                                "OUT/serving/latest")
    with open(metadata_path) as f:
        metadata = json.load(f)
    return {"/model/metadata.json": metadata_path,
            "/model/model.tflite": os.path.join(model_dir, metadata["model_file"]),
            "/model/vocabulary.json": os.path.join(model_dir, metadata["vocabulary_file"])}


def _inside(folder: str, relative: str) -> Optional[str]:
    """``folder/relative`` if it is a file that really lies inside ``folder`` (no ``..``, no symlink escape)."""
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    path = os.path.realpath(os.path.join(folder, relative))
    root = os.path.realpath(folder)
    if os.path.commonpath([path, root]) != root or not os.path.isfile(path):
        return None
    return path


class DemoHandler(http.server.BaseHTTPRequestHandler):
    """GET/HEAD of the allowed files only; everything else is 404 (405 for other methods)."""

    files: Dict[str, str] = {}
    server_version = "ondevice-rec-demo"

    def resolve(self, raw_path: str) -> Optional[str]:
        path = urllib.parse.unquote(urllib.parse.urlsplit(raw_path).path)
        if path in ("/", "/index.html"):
            return os.path.join(STATIC_DIR, "index.html")
        if path in self.files:
            return self.files[path]
        normalized = posixpath.normpath(path)
        if normalized != path.rstrip("/") or ".." in path.split("/"):
            return None
        if path.startswith("/static/"):
            return _inside(STATIC_DIR, path[len("/static/"):])
        for prefix, folder in VENDOR.items():
            if path.startswith(prefix):
                return _inside(folder, path[len(prefix):])
        return None

    def _send(self, with_body: bool) -> None:
        target = self.resolve(self.path)
        if target is None or not os.path.isfile(target):
            self.send_error(404, "not found")
            return
        with open(target, "rb") as f:
            body = f.read()
        self.send_response(200)
        kind = MIME.get(os.path.splitext(target)[1]) or mimetypes.guess_type(target)[0] or "application/octet-stream"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        self._send(True)

    def do_HEAD(self):  # noqa: N802
        self._send(False)

    def _refuse(self):
        self.send_error(405, "read-only")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def log_message(self, fmt, *args):  # quiet: the CLI prints one line per model run instead
        pass


def make_server(model_dir: str, port: int = 8000, host: str = "127.0.0.1") -> Tuple[http.server.HTTPServer, str]:
    """A threading HTTP server for ``model_dir``; returns it and its URL (port 0 picks a free port)."""
    check_runtime()
    handler = type("BoundDemoHandler", (DemoHandler,), {"files": model_files(os.path.abspath(model_dir))})
    server = http.server.ThreadingHTTPServer((host, port), handler)
    return server, f"http://{host}:{server.server_address[1]}/"
