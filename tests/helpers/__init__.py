"""Shared test helpers: media factories, store checks, CLI runner, fault tallies."""
