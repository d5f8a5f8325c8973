"""The core runtime: a pipeline's declaration (and the table its items are rows of), its
registration as actors (per-item and inbox), discover, running one item (retries,
outcomes) and the process-wide runtime and clock.

Nothing here imports the application (``actors``/``scheduler``): the application
entry point (:mod:`backlane.app`) loads it and hands its registry to whoever asks.
"""
