"""One demo part per pipeline (see :mod:`devtools.demo.part`), found by :mod:`devtools.demo.discovery`:
a module here named after the pipeline, or after the folder under ``actors/`` that declares it."""
