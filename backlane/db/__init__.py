"""The database: engine and sessions, typed models, and the claim queries discover runs."""
