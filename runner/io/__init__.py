"""I/O at the edges: inputs, local media, the output store and lock, batch files, export."""
