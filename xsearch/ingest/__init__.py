"""Ingest, decode side: find media files, read their sidecar texts, and decode each file into
model-ready items (224 px RGB images, audio windows) in worker processes that can time out and
are memory-limited, so that one bad file never takes the ingest, or the process holding the
model, down with it.
"""
