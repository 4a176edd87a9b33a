"""The outside world over MQTT: outbox, publisher, downlink, counts."""
