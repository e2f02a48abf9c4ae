"""Channel adapters: the contract (base.py), the registry, and the built-in adapters."""
