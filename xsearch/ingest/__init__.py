"""Ingest, decode side: find media files, read their sidecar texts, and decode each file into
model-ready items (RGB images and audio windows at the model's input size and sample rate) in
worker processes that can time out and are memory-limited, so that one bad file never takes the
ingest, or the process holding the model, down with it.
"""
