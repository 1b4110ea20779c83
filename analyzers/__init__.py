"""Built-in analyzers. Every module here is imported by :func:`triage.registry.discover`."""
