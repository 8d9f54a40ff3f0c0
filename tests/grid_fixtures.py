"""Small hand-made grids for tests: two towns, four communities, sixteen cells, all tiling."""

from __future__ import annotations

import io
import json
from typing import Any

from shapely.geometry import box, mapping

TOWNS = {
    "441900003": ("东城街道", (113.70, 23.00, 113.76, 23.06)),
    "441900004": ("南城街道", (113.76, 23.00, 113.82, 23.06)),
}


def town_boxes() -> dict[str, tuple[float, float, float, float]]:
    return {code: b for code, (_, b) in TOWNS.items()}


def community_boxes() -> dict[str, tuple[str, tuple[float, float, float, float]]]:
    out = {}
    for town, (x0, y0, x1, y1) in town_boxes().items():
        xm = (x0 + x1) / 2
        out[f"{town}001"] = (town, (x0, y0, xm, y1))
        out[f"{town}002"] = (town, (xm, y0, x1, y1))
    return out


def cell_boxes() -> dict[str, tuple[str, tuple[float, float, float, float]]]:
    out = {}
    for comm, (_, (x0, y0, x1, y1)) in community_boxes().items():
        xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
        quads = [(x0, y0, xm, ym), (xm, y0, x1, ym), (x0, ym, xm, y1), (xm, ym, x1, y1)]
        for i, q in enumerate(quads, start=1):
            out[f"{comm}{i:03d}"] = (comm, q)
    return out


def feature(code: str, name: str, geom: Any, parent: str | None = None, **extra: Any) -> dict:
    props = {"code": code, "name": name, **extra}
    if parent is not None:
        props["parent_code"] = parent
    geometry = geom if isinstance(geom, dict) else mapping(geom)
    return {"type": "Feature", "properties": props, "geometry": geometry}


def collection(features: list[dict]) -> dict:
    return {"type": "FeatureCollection", "features": features}


def towns_fc() -> dict:
    return collection([feature(c, n, box(*b)) for c, (n, b) in TOWNS.items()])


def communities_fc(with_parent: bool = True) -> dict:
    return collection(
        [
            feature(c, f"社区{c[-3:]}", box(*b), t if with_parent else None)
            for c, (t, b) in community_boxes().items()
        ]
    )


def cells_fc() -> dict:
    return collection(
        [feature(c, f"网格{c[-6:]}", box(*b), comm) for c, (comm, b) in cell_boxes().items()]
    )


def upload(
    client: Any,
    headers: dict,
    fc: dict | bytes,
    level: str,
    filename: str = "x.geojson",
    **form: Any,
) -> Any:
    data = fc if isinstance(fc, bytes) else json.dumps(fc).encode()
    payload = {
        "level": level,
        **{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in form.items()},
    }
    payload["file"] = (io.BytesIO(data), filename)
    return client.post(
        "/api/v1/grid/imports", data=payload, headers=headers, content_type="multipart/form-data"
    )


def load_small_grid(client: Any, headers: dict) -> None:
    for level, fc in (("town", towns_fc()), ("community", communities_fc()), ("cell", cells_fc())):
        resp = upload(client, headers, fc, level)
        assert resp.status_code == 201, resp.get_json()
