"""Shared by the customer-data tests: fields like a shop defines them."""

from __future__ import annotations

from typing import Any

FIELDS: dict[str, Any] = {
    "fields": {
        "lifetime_value": {"type": "number", "label": "Lifetime value"},
        "segment": {"type": "enum", "choices": ["retail", "wholesale"], "label": "Segment"},
        "customer_since": {"type": "date", "label": "Customer since"},
        "newsletter": {"type": "boolean", "label": "Newsletter"},
        "notes": {"type": "text", "label": "Notes"},
    },
    "company_fields": {
        "plan": {"type": "enum", "choices": ["free", "pro", "enterprise"], "label": "Plan"},
        "seats": {"type": "number", "label": "Seats"},
    },
}
