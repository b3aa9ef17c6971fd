"""Static assets for weak mobile data: fingerprinted URLs cached for a year, and gzip for text."""
from __future__ import annotations

import gzip
import hashlib
import os
from functools import lru_cache
from typing import Any

from flask import Flask, Response, current_app, request, url_for

COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml", "text/markdown")
MIN_SIZE = 500


@lru_cache(maxsize=256)
def _fingerprint(path: str, mtime: float) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:10]


def static_url(filename: str) -> str:
    """``url_for('static')`` with a content hash, so the file can be cached for a year."""
    path = os.path.join(current_app.static_folder or "", filename)
    try:
        version = _fingerprint(path, os.path.getmtime(path))
    except OSError:
        return url_for("static", filename=filename)
    return url_for("static", filename=filename, v=version)


@lru_cache(maxsize=128)
def _gzipped(key: tuple[str, float, int], data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)


def install(app: Flask) -> None:
    app.jinja_env.globals["static_url"] = static_url

    @app.after_request
    def _compress_and_cache(response: Response) -> Response:
        if request.path.startswith("/static/"):
            response.headers["Cache-Control"] = ("public, max-age=31536000, immutable" if request.args.get("v")
                                                 else "public, max-age=3600")
        if (response.status_code != 200 or "gzip" not in request.headers.get("Accept-Encoding", "")
                or response.headers.get("Content-Encoding") or not (response.mimetype or "").startswith(COMPRESSIBLE)):
            return response
        response.direct_passthrough = False
        data: Any = response.get_data()
        if len(data) < MIN_SIZE:
            return response
        if request.path.startswith("/static/"):
            body = _gzipped((request.path, response.last_modified.timestamp() if response.last_modified else 0.0,
                             len(data)), data)
        else:
            body = gzip.compress(data, compresslevel=6)
        response.set_data(body)
        response.headers["Content-Encoding"] = "gzip"
        response.headers["Content-Length"] = str(len(body))
        response.vary.add("Accept-Encoding")
        return response
