"""What operators see and do: status, health, the metrics/health endpoint, the
RabbitMQ management API client, dead-letter administration and JSON Schemas."""
