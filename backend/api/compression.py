"""gzip for large JSON answers, when the client accepts it.

The phone's near-me page is ~20 KB of JSON for 50 tasks and ~3–4 KB gzipped (level 1, ~30 µs):
a sixth of the mobile data per refresh, and less for the server to write (measured in
benchmarks/README.md, "phone"). Level 1: on JSON it compresses nearly as well as level 6 in a
third of the time. ETags stay as they are: they name the resource's state (a version, or the
hash of the uncompressed page), which is the same in either encoding."""

from __future__ import annotations

import gzip

from flask import Request, Response

MIN_BYTES = 1024
LEVEL = 1
_TYPES = ("application/json", "application/problem+json", "application/geo+json", "text/")


def compress_response(request: Request, response: Response) -> Response:
    response.vary.add("Accept-Encoding")
    if (
        response.direct_passthrough
        or response.is_streamed
        or response.status_code < 200
        or response.status_code in (204, 206, 304)
        or "Content-Encoding" in response.headers
        or not (response.mimetype or "").startswith(_TYPES)
        or "gzip" not in request.headers.get("Accept-Encoding", "").lower()
        or request.accept_encodings["gzip"] <= 0
    ):
        return response
    data = response.get_data()
    if len(data) < MIN_BYTES:
        return response
    response.set_data(gzip.compress(data, compresslevel=LEVEL, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    return response
