"""The framework's floor for bench_phone.py: a bare Flask app answering fixed JSON.

    gunicorn --chdir benchmarks floor_app:app

Served under the same gunicorn settings as the real app (`backend.wsgi:app`), it shows what
gunicorn + Flask + the load generator cost on this machine with no routing tables, no auth, no
database and no serialisation work: the best throughput any endpoint could reach here.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify

app = Flask("floor")

FIXED: dict[str, Any] = {"status": "ok", "items": [{"id": 1, "type": "annual_report_prompt"}]}


@app.get("/api/mobile/v1/tasks")
def tasks() -> Any:
    """Fixed JSON, whatever the query string and headers say."""
    return jsonify(FIXED)
