"""omnidesk: a self-hosted omnichannel customer-service daemon."""

__version__ = "0.1.0"
