"""Collectors: recognise a source and copy its declared artifact families into a case."""
