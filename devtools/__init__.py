"""Development tooling, not part of the installed ``backlane`` wheel: private
RabbitMQ/PostgreSQL nodes (``infra``), the HTTP simulators of the external APIs
(``simulator``), the local process stack, the demo and its sample data.

Used by ``scripts/``, the tests and the benchmarks from a source checkout.
"""
