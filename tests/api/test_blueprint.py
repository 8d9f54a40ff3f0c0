"""Our Blueprint's shortcuts give what flask-smorest's own code gives."""

from __future__ import annotations

import json

import flask_smorest
from hypothesis import given
from hypothesis import strategies as st

from backend.api.blueprint import Blueprint


@given(
    page=st.integers(1, 50),
    page_size=st.integers(1, 200),
    item_count=st.integers(0, 100_000),
)
def test_pagination_metadata_as_flask_smorest_makes_it(page, page_size, item_count):
    ours = Blueprint._make_pagination_metadata(page, page_size, item_count)
    theirs = flask_smorest.Blueprint._make_pagination_metadata(page, page_size, item_count)
    assert json.dumps(ours) == json.dumps(theirs)  # same keys, same order, same values
