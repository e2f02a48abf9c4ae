"""The service loop: SLA clocks in business hours, time-based rules, surveys,
satisfaction and reports.

Pure computations (``sla``, ``evaluate``, ``histogram``, ``satisfaction``,
``surveys``' texts and tokens, ``charts``) work on plain data; the
``scheduler`` runs them over the store's conversations and applies what they
decide, each action once per episode.
"""
