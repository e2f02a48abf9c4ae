"""The API docs at ``/docs``: Swagger UI from the package's own static files
(``static/swagger/``, see SOURCE.txt there), so the page works on a machine
without internet access. FastAPI's default loads it from a CDN."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

ASSETS = "/static/swagger"


@router.get("/docs")
async def api_docs(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        # No badge that asks validator.swagger.io about the schema.
        swagger_ui_parameters={"validatorUrl": None},
    )
