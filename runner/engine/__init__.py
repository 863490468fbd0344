"""The engines: throttle, realtime pipeline, batch driver; given client, clock and writer."""
