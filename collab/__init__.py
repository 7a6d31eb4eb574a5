"""How people work together on an item: CRDT rooms, the update log, cross-node fan-out,
the Redis dispatcher and the consensus algorithms. Never imports Starlette or `server`."""
