"""Forward-only numbered SQL migrations and the runner that applies them."""
