"""Serve the web app and a bundle as static files on this machine (Python standard library only).

    python examples/web/serve.py --bundle mc2-s0-onnx [--port 8000] [--no-isolation]

then open http://127.0.0.1:8000/?bundle=bundle/ . The app is plain static files: any web server works (run
``npm ci`` in examples/web first: the page imports onnxruntime-web from node_modules/). This one adds what
a static host should also send:

* ``Cross-Origin-Opener-Policy: same-origin`` + ``Cross-Origin-Embedder-Policy: require-corp``: the page
  is then cross-origin isolated and onnxruntime-web runs multi-threaded (SharedArrayBuffer); without them
  it runs on one thread (``--no-isolation`` shows that);
* ``application/wasm`` / ``text/javascript`` types for ``.wasm`` / ``.mjs``.

``--bundle DIR`` is served under ``/bundle/`` (``--mount NAME=DIR`` adds more folders, under ``/NAME/``).
Binds to 127.0.0.1 only. The tests (tests/test_web*.py) use :func:`start`.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import os
import sys
import threading
from pathlib import Path
from typing import Dict, Optional, Tuple

HERE = Path(__file__).resolve().parent


class _Handler(http.server.SimpleHTTPRequestHandler):
    mounts: Dict[str, Path] = {}
    isolation = True
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                      ".mjs": "text/javascript", ".js": "text/javascript", ".json": "application/json",
                      ".onnx": "application/octet-stream", ".f32": "application/octet-stream",
                      ".i32": "application/octet-stream", ".u8": "application/octet-stream"}

    def _root(self, path: str) -> Path:
        parts = [p for p in path.split("?", 1)[0].split("#", 1)[0].split("/") if p]
        return self.mounts[parts[0]] if parts and parts[0] in self.mounts else Path(self.directory)

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0].split("#", 1)[0]
        parts = [p for p in clean.split("/") if p]
        if parts and parts[0] in self.mounts:
            root = self.mounts[parts[0]]
            rel = [p for p in parts[1:] if p not in (".", "..")]
            return str(root.joinpath(*rel)) if rel else str(root) + os.sep
        return super().translate_path(path)

    def send_head(self):
        # a symlink inside a served folder that points out of it is not followed: 404, as for a missing file
        root = os.path.realpath(self._root(self.path))
        real = os.path.realpath(self.translate_path(self.path))
        if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def end_headers(self):
        if self.isolation:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format, *args):  # quiet: the tests and the user see the page, not the access log
        pass


def start(root: Path = HERE, mounts: Optional[Dict[str, Path]] = None, port: int = 0,
          isolation: bool = True) -> Tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``root`` (and ``mounts``: URL prefix -> folder) on 127.0.0.1 in a daemon thread.
    Returns (server, base URL); ``server.shutdown()`` stops it."""
    handler = type("Handler", (_Handler,), {"mounts": {k: Path(v).resolve() for k, v in (mounts or {}).items()},
                                            "isolation": isolation})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(handler, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, help="an ONNX bundle folder (mc2export onnx --out DIR), served as /bundle/")
    ap.add_argument("--mount", action="append", default=[], metavar="NAME=DIR", help="serve DIR under /NAME/")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--no-isolation", action="store_true", help="no COOP/COEP headers (single-threaded WASM)")
    a = ap.parse_args(argv)
    mounts = {}
    if a.bundle is not None:
        mounts["bundle"] = a.bundle
    for m in a.mount:
        name, sep, folder = m.partition("=")
        if not sep or not name or "/" in name:
            print(f"serve.py: --mount '{m}' is not NAME=DIR", file=sys.stderr)
            return 2
        mounts[name] = Path(folder)
    for name, folder in mounts.items():
        if not Path(folder).is_dir():
            print(f"serve.py: '{folder}' is not a folder", file=sys.stderr)
            return 2
    if not (HERE / "node_modules" / "onnxruntime-web" / "package.json").is_file():
        print("serve.py: node_modules/onnxruntime-web is missing: run `npm ci` in examples/web first", file=sys.stderr)
        return 2
    server, url = start(HERE, mounts, a.port, not a.no_isolation)
    print(f"serving {HERE} at {url}" + (f"  (bundle: {url}?bundle=bundle/)" if "bundle" in mounts else ""))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
