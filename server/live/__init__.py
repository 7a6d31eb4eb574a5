"""Live documents over WebSocket: the collaboration endpoint, and the access watch that
closes open sockets whose user lost access."""
