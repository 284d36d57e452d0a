"""Match events: their schema, the durable outbox and the MQTT publisher."""
