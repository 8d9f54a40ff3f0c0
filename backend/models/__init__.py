"""SQLAlchemy 2.0 typed models, one module per aggregate."""

from backend.models.audit import AuditEvent
from backend.models.base import SRID, Base
from backend.models.entity import EntityPlacement, MarketEntity, StandardAddress
from backend.models.grid import City, Community, GridBoundaryVersion, GridCell, GridImport, Town
from backend.models.jobs import EntityImportJob
from backend.models.user import (
    ROLES,
    AppUser,
    AuthSession,
    CellWorker,
    LoginThrottle,
    RefreshToken,
)

__all__ = [
    "ROLES",
    "SRID",
    "AppUser",
    "AuditEvent",
    "AuthSession",
    "Base",
    "CellWorker",
    "City",
    "Community",
    "EntityImportJob",
    "EntityPlacement",
    "GridBoundaryVersion",
    "GridCell",
    "GridImport",
    "LoginThrottle",
    "MarketEntity",
    "RefreshToken",
    "StandardAddress",
    "Town",
]
