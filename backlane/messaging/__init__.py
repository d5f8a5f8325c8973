"""Everything that talks AMQP: the RabbitMQ broker, confirmed batch publishing,
dead-lettering with a reason, declaring queues, and domain events."""
