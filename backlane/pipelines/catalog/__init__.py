"""The catalog pipeline's parts that are not the actor: which sections exist and where
they come from (:mod:`.sections`), the pure arithmetic of due, next-due and health
(:mod:`.schedule`), writing a fetched section (:mod:`.store`) and the per-section
status rows (:mod:`.health`). Fetching through the breaker and rate limit is
:mod:`backlane.clients.catalog_sources`; the actor itself is ``actors/catalog.py``."""
