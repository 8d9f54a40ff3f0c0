"""Alembic migrations; every schema change is a migration."""
