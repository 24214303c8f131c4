"""Monitoring of the local serving processes: Prometheus metrics (and, to come, alarms, drift, the dashboard)."""
