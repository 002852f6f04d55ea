"""Readers: rows of Parquet, Arrow IPC and JSON Lines files (or a caller's Ray Dataset) as
blocks in the reader's column contract."""
