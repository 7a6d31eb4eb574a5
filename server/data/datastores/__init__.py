"""Where a project's files live: a local folder, server-managed uploads, or Azure Blob."""
