"""Event logs: EVTX and JSON exports, Sigma rules, coverage."""
