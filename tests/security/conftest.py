"""The security suite shares the inbox tests' daemon (one per module, on each
store engine, with accounts in several roles and teams) and their Chromium."""

from tests.web.conftest import browser, env, module_store_url  # noqa: F401 - fixtures
