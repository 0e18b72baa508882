"""Tessera storage node: shard files and a SQLite metadata index, served over gRPC (mTLS)."""
