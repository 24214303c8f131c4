"""The live dashboard at ``/dashboard`` on the API server: one page, plotly.js served locally, refreshed every
few seconds from ``/dashboard/data``."""

from deploy.dashboard.data import DashboardSources
from deploy.dashboard.routes import Dashboard

__all__ = ["Dashboard", "DashboardSources"]
