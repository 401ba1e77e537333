"""Shared test helpers: media factories, fake models and indexes built with them, store checks,
the CLI runner, fault injection and tallies. Tests import these, never another test module."""
