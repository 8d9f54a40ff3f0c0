"""Database and PostGIS versions for the health check."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend import __version__


def database_versions(session: Session) -> dict[str, str]:
    row = session.execute(
        text(
            "SELECT current_setting('server_version') AS database, "
            "postgis_lib_version() AS postgis, postgis_geos_version() AS geos, "
            "postgis_proj_version() AS proj"
        )
    ).one()
    return {"version": __version__, **{k: str(v) for k, v in row._mapping.items()}}
