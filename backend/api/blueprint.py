"""flask-smorest Blueprint with one extra argument location, `form_and_files`: a multipart body
whose form fields and files are validated by one schema and documented as one requestBody."""

from __future__ import annotations

from typing import Any, ClassVar

import flask_smorest
from webargs.flaskparser import FlaskParser
from webargs.multidictproxy import MultiDictProxy
from werkzeug.datastructures import CombinedMultiDict


class GridpatrolParser(FlaskParser):
    __location_map__: ClassVar[dict[str, str]] = dict(
        form_and_files="load_form_and_files",
        **FlaskParser.__location_map__,
    )

    def load_form_and_files(self, req: Any, schema: Any) -> MultiDictProxy:
        return self._makeproxy(CombinedMultiDict([req.form, req.files]), schema)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = GridpatrolParser()
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING: ClassVar[dict[str, str]] = {
        **flask_smorest.Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "form_and_files": "multipart/form-data",
    }
