"""Colabel server: HTTP API, WebSocket endpoints, auth, projects and the CLI."""
