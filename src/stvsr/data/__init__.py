"""Video I/O, datasets and degradations."""
