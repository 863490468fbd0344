"""I/O at the edges: input readers, local media, the output store and lock, batch work files, export."""
