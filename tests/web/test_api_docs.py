"""The API docs at /docs work without internet: Swagger UI comes from the
package's own files, checked in Chromium with every request that leaves this
machine refused. And every file the web UI serves ships in the package."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from omnidesk.app import Daemon
from tests.conftest import REPO, make_config
from tests.web.conftest import screenshot_path

LOCAL = {"127.0.0.1", "localhost", "::1"}


@pytest.mark.browser
@pytest.mark.asyncio(loop_scope="module")
async def test_docs_render_offline_in_chromium(browser: Any, tmp_path: Path) -> None:
    daemon = Daemon(make_config(tmp_path, f"sqlite:///{tmp_path / 'omnidesk.db'}"))
    await daemon.start()
    base = f"http://127.0.0.1:{daemon.web_port}"
    try:
        async with httpx.AsyncClient(base_url=base) as c:
            html = (await c.get("/docs")).text
            assert "/static/swagger/swagger-ui-bundle.js" in html
            assert "cdn" not in html.lower()
            asset = await c.get("/static/swagger/swagger-ui-bundle.js")
            assert asset.status_code == 200 and len(asset.content) > 500_000
            assert (await c.get("/redoc")).status_code == 404  # not offered

        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        left: list[str] = []  # requests that would have left the machine

        async def offline(route: Any) -> None:
            url = route.request.url
            if urlsplit(url).hostname in LOCAL:
                await route.continue_()
            else:
                left.append(url)
                await route.abort("internetdisconnected")

        await context.route("**/*", offline)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(base + "/docs")
        await page.wait_for_selector(".opblock-summary-path", timeout=20_000)
        paths = await page.locator(".opblock-summary-path").all_inner_texts()
        cleaned = {p.replace("\u200b", "").strip() for p in paths}
        assert {"/healthz", "/api/v1/conversations", "/api/v1/conversations/{conversation_id}"} <= (
            cleaned
        ), sorted(cleaned)
        assert "omnidesk" in await page.locator(".info .title").inner_text()
        # An operation opens and shows its parameters (the page is alive, not a picture).
        await page.locator(".opblock-summary-path", has_text="/api/v1/conversations").first.click()
        await page.wait_for_selector(".opblock.is-open .parameters-container", timeout=10_000)
        await page.screenshot(path=screenshot_path("api-docs-offline"), full_page=False)
        assert left == [], left
        assert errors == [], errors
        await context.close()
    finally:
        await daemon.stop()


def test_every_web_file_ships_in_the_package() -> None:
    """``[tool.setuptools.package-data]`` names each folder's files by glob
    (``web/static/*`` does not reach into subfolders): every static file and
    template, Swagger UI's included, must match one."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = meta["tool"]["setuptools"]["package-data"]["omnidesk"]
    pkg = REPO / "src" / "omnidesk"
    files = [
        p.relative_to(pkg).as_posix()
        for folder in ("web/static", "web/templates")
        for p in (pkg / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert "web/static/swagger/swagger-ui-bundle.js" in files
    assert "web/static/swagger/LICENSE" in files
    missing = [f for f in files if not any(_ships(f, g) for g in globs)]
    assert missing == []


def _ships(path: str, glob: str) -> bool:
    """setuptools' package-data glob: ``*`` stays within one folder."""
    parts, wanted = path.split("/"), glob.split("/")
    return len(parts) == len(wanted) and all(map(fnmatch, parts, wanted))
