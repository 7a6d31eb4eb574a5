"""Monitoring: live project events and the statistics behind the monitoring page."""
