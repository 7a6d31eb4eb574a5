"""ML assistance: model loading, training, calibration, embeddings and the Ray Serve
deployments, plus the small client the server calls. Never imports `server` or `collab`."""
