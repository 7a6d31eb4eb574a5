"""The work of labeling: the queue that hands items out, leases, submits and their
decisions, consensus, and review."""
