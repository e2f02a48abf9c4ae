"""The fault suite's parts (``bench/faults.py`` runs them): a daemon in a
child process that can be killed, load generators that retry like the real
senders do, the accounting of what was acknowledged against what was stored,
and one module a scenario."""
