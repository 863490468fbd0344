"""The engines: the throttle, the realtime pipeline and the batch driver. They get their client, clock and store as arguments."""
