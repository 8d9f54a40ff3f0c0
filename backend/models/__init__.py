"""SQLAlchemy 2.0 typed models, one module per aggregate."""

from backend.models.base import SRID, Base
from backend.models.grid import City, Community, GridBoundaryVersion, GridCell, GridImport, Town
from backend.models.user import ROLES, AppUser

__all__ = [
    "ROLES",
    "SRID",
    "AppUser",
    "Base",
    "City",
    "Community",
    "GridBoundaryVersion",
    "GridCell",
    "GridImport",
    "Town",
]
