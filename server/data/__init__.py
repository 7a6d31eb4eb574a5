"""Data in: datastores, binding a project to its files, ingest and refresh, uploads,
imports of tables and labeled datasets, and probing the files' headers."""
