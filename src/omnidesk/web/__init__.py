"""The HTTP side: API (OpenAPI at /openapi.json), webhooks, health, metrics."""
