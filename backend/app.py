"""Application factory."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import date, datetime
from typing import Any

import swagger_ui_bundle
from flask import Flask, Response, g, request, send_from_directory
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from backend import __version__
from backend.api.compression import compress_response
from backend.api.problem_api import ProblemApi
from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.errors import register_error_handlers
from backend.services import clock
from backend.web import close_db_session

SWAGGER_ASSETS = "/api/docs/assets"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
access_log = logging.getLogger("gridpatrol.access")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the request id when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("request_id", "method", "path", "status", "ms", "user"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if any(getattr(h, "_gridpatrol", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    handler._gridpatrol = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


class IsoJSONProvider(DefaultJSONProvider):
    """Datetimes as ISO 8601 (Flask's default is the HTTP date format)."""

    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, datetime | date):
            return o.isoformat()
        return DefaultJSONProvider.default(o)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    clock.configure(settings.business_tz)  # business dates: one zone (docs/dates.md)
    app = Flask("gridpatrol")
    app.json_provider_class = IsoJSONProvider
    app.json = IsoJSONProvider(app)
    if len(settings.secret_key) < 32:
        if settings.environment == "production":
            raise RuntimeError("GRIDPATROL_SECRET_KEY must be set (32+ characters) in production.")
        logging.getLogger(__name__).warning(
            "GRIDPATROL_SECRET_KEY is unset or short: using a random key; tokens die on restart."
        )
    app.config.update(
        SECRET_KEY=settings.secret_key
        if len(settings.secret_key) >= 32
        else uuid.uuid4().hex + uuid.uuid4().hex,
        GRIDPATROL_SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_upload_mb * 1024 * 1024,
        GRIDPATROL_GEOFENCE_M=settings.geofence_m,
        JSON_SORT_KEYS=False,
        API_TITLE="gridpatrol",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        # Served from the package, not a CDN: government networks are often offline.
        OPENAPI_SWAGGER_UI_URL=SWAGGER_ASSETS + "/",
        API_SPEC_OPTIONS={
            "info": {
                "description": (
                    "Grid-based market supervision for Dongguan (智网工程). Coordinates are "
                    "CGCS2000 (EPSG:4490) lon/lat; inputs say their CRS with `crs=` "
                    "(wgs84|cgcs2000|gcj02|bd09). Errors are application/problem+json."
                )
            },
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                }
            },
            "security": [{"bearerAuth": []}],
        },
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    configure_logging()

    engine = make_engine(settings.database_url, prepared=settings.prepared_statements)
    app.extensions["gridpatrol.engine"] = engine
    app.extensions["gridpatrol.sessionmaker"] = make_sessionmaker(engine)
    # Views marked read_only (backend/web.py) run without a transaction around them, on their
    # own pool of autocommit connections: switching a pooled connection to autocommit and back
    # costs two round trips per request, which is what they are meant to save.
    read_engine = make_engine(settings.database_url, isolation_level="AUTOCOMMIT")
    app.extensions["gridpatrol.read_engine"] = read_engine
    app.extensions["gridpatrol.read_sessionmaker"] = make_sessionmaker(read_engine)
    app.teardown_appcontext(close_db_session)

    app.add_url_rule(SWAGGER_ASSETS + "/<path:filename>", "swagger_assets", _swagger_asset)
    if settings.proxy_hops:  # client addresses (throttling, audit) from X-Forwarded-For
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops
        )
    api = ProblemApi(app)
    register_blueprints(api)
    register_error_handlers(app)
    _register_request_hooks(app)
    return app


def _swagger_asset(filename: str) -> Response:
    """Swagger UI's files, from the swagger-ui-bundle package (public, like the docs page)."""
    return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename, max_age=86400)


def register_blueprints(api: ProblemApi) -> None:
    from backend.api.addresses import blp as addresses_blp
    from backend.api.attachments import blp as attachments_blp
    from backend.api.audit import blp as audit_blp
    from backend.api.auth import blp as auth_blp
    from backend.api.calendar import blp as calendar_blp
    from backend.api.departments import blp as departments_blp
    from backend.api.entities import blp as entities_blp
    from backend.api.grid import blp as grid_blp
    from backend.api.health import blp as health_blp
    from backend.api.outbox import blp as outbox_blp
    from backend.api.permit_types import blp as permit_types_blp
    from backend.api.referrals import blp as referrals_blp
    from backend.api.referrals import dispatch_blp, routing_blp
    from backend.api.tasks import blp as tasks_blp
    from backend.api.tasks import leads_blp
    from backend.api.users import blp as users_blp
    from mobile_api import auth_blp as mobile_auth_blp
    from mobile_api import blp as mobile_blp
    from mobile_api.tasks import blp as mobile_tasks_blp

    blueprints = (
        health_blp,
        auth_blp,
        users_blp,
        grid_blp,
        entities_blp,
        addresses_blp,
        audit_blp,
        calendar_blp,
        tasks_blp,
        leads_blp,
        referrals_blp,
        attachments_blp,
        routing_blp,
        departments_blp,
        permit_types_blp,
        dispatch_blp,
        outbox_blp,
        mobile_auth_blp,
        mobile_blp,
        mobile_tasks_blp,
    )
    for blp in blueprints:
        api.register_blueprint(blp)


def _register_request_hooks(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        response = compress_response(request, response)
        response.headers["X-Request-ID"] = g.get("request_id", "")
        principal = g.get("principal")
        access_log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "request_id": g.get("request_id"),
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "ms": round(
                    (time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 1
                ),
                "user": principal.username if principal else None,
            },
        )
        return response
