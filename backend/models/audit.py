"""The append-only audit trail (执法全过程记录): who changed what, when, from where."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.models.base import SRID, Base


class AuditEvent(Base):
    """Never updated or deleted (database triggers refuse it; the app role may not either)."""

    __tablename__ = "audit_event"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("clock_timestamp()"), nullable=False
    )
    # The transaction that wrote it: a change to an audited table commits only when an event
    # for the same object exists in the same transaction (a deferred constraint trigger).
    txid: Mapped[int] = mapped_column(
        BigInteger, server_default=text("txid_current()"), nullable=False
    )
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("app_user.id"))
    actor_username: Mapped[str] = mapped_column(Text, nullable=False)
    actor_role: Mapped[str] = mapped_column(Text, nullable=False)
    client_addr: Mapped[str | None] = mapped_column(Text)
    device_location: Mapped[Any] = mapped_column(
        Geometry("POINT", srid=SRID, spatial_index=False), nullable=True
    )
    action: Mapped[str] = mapped_column(Text, nullable=False)
    object_type: Mapped[str] = mapped_column(Text, nullable=False)
    object_id: Mapped[str] = mapped_column(Text, nullable=False)
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    request_id: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        Index("ix_audit_event_object", "object_type", "object_id", "occurred_at"),
        Index("ix_audit_event_actor", "actor_user_id", "occurred_at"),
        Index("ix_audit_event_occurred_at", "occurred_at"),
        Index("ix_audit_event_txid", "txid", "object_type", "object_id"),
    )
