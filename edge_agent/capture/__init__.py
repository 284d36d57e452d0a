"""Frame sources: each one only produces `Frame`s; none knows about models, storage or MQTT."""
