"""Faults on a three-node RabbitMQ cluster in network namespaces (python -m tests.cluster)."""
