"""The FAISS index layer (per-modality indexes, CPU/GPU placement, persistence)."""
