"""`/docs`: Swagger UI from files installed with the package, never a CDN, so the page works
offline and behind strict firewalls.

The assets (Swagger UI 5's bundle and stylesheet, Apache-2.0) come from `fastapi-offline`
(MIT), a maintained package that ships them; FastAPI's own `get_swagger_ui_html` writes the
page pointing at them. The page's Content-Security-Policy allows exactly what it runs: its
scripts and styles from this server, the one inline start-up script by its hash, the
stylesheet's `data:` images, and fetching /openapi.json.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = resources.files("fastapi_offline") / "static"
ASSET_PATH = "/docs/assets"
_MEDIA_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def _script_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def page_policy(html: str) -> str:
    """Give the CSP that lets `html` (a Swagger UI page) run and nothing else."""
    inline = " ".join(_script_hash(script) for script in _INLINE_SCRIPT.findall(html))
    return (
        f"default-src 'none'; script-src 'self' {inline}; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


def docs_router(title: str, openapi_url: str) -> APIRouter:
    """Give the routes of the docs page and its assets, for an app titled `title`."""
    html = bytes(
        get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - API docs",
            swagger_js_url=f"{ASSET_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSET_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSET_PATH}/favicon.png",
            oauth2_redirect_url=None,
            # no badge image from validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None},
        ).body
    ).decode("utf-8")
    headers = {
        "Content-Security-Policy": page_policy(html),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)

    def asset(name: str) -> None:
        path, media_type = str(ASSETS / name), _MEDIA_TYPES[name]

        async def serve() -> FileResponse:
            return FileResponse(
                path, media_type=media_type, headers={"X-Content-Type-Options": "nosniff"}
            )

        router.add_api_route(f"{ASSET_PATH}/{name}", serve, methods=["GET"])

    for name in _MEDIA_TYPES:
        asset(name)
    return router


__all__ = ["ASSET_PATH", "docs_router", "page_policy"]
