"""The store: one directory per named index, published in atomic generations.

Embeddings (Parquet) are the source of truth; asset and item metadata (Parquet, read with
DuckDB) describe them; FAISS indexes are derived files that can always be rebuilt.
"""
