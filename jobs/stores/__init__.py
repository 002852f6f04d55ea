"""The job's two stores: the input corpus (files, footers, fingerprints, ids, hub inputs) and
the output folder (manifest, checkpoint, incremental ledger, lock, counts), and storage checks."""
