"""gridpatrol backend: Flask app, models, services, dispatch/department/admin APIs, CLI."""

__version__ = "0.1.0"
