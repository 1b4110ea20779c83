"""Readers and recognisers shared by collectors and analyzers (the formats layer)."""
