"""Long work asked for over the API, run by worker processes: the `jobs` table, the runner
that claims and runs them, and the API that follows and cancels them."""
