"""The petition page's own CSS and script, served from memory by the app: no CDN, no disk reads
per request, and nothing but the files in `api_stub/pages/static/` can be asked for."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

STATIC = Path(__file__).parent / "static"
ASSET_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


def load_assets(folder: Path = STATIC) -> dict[str, tuple[bytes, str, str]]:
    """The page's few small files, read once: name -> (content, media type, ETag)."""
    assets = {}
    for path in sorted(folder.iterdir()):
        if path.suffix in ASSET_TYPES:
            content = path.read_bytes()
            etag = '"' + hashlib.sha256(content).hexdigest()[:16] + '"'
            assets[path.name] = (content, ASSET_TYPES[path.suffix], etag)
    return assets


def serving_assets(assets: Mapping[str, tuple[bytes, str, str]]) -> Callable[[Request], Awaitable[Response]]:
    """GET /static/{name}: from memory, revalidated by ETag (the files change only with a release)."""

    async def static(request: Request) -> Response:
        asset = assets.get(request.path_params["name"])
        if asset is None:
            return Response(b"not found", 404, media_type="text/plain")
        content, media_type, etag = asset
        headers = {"ETag": etag, "Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}
        if request.headers.get("if-none-match") == etag:
            return Response(None, 304, headers)
        return Response(content, 200, headers, media_type=media_type)

    return static
