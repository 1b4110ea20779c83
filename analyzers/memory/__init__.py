"""Memory images and process minidumps (placeholder while the package is written)."""
