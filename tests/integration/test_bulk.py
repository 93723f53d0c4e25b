"""psycopg keeps its parse of the hot path's long statements (sagas.bulk.keep_long_statements_parsed):
a decision over several sagas has more parameters than psycopg's own limit for keeping it."""

from __future__ import annotations

import pytest
from psycopg import _queries

from sagas import bulk

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_a_statement_of_more_parameters_than_psycopg_keeps_by_default_is_parsed_once() -> None:
    values = list(range(120))  # psycopg keeps the parse of at most 50 by default
    sql = "SELECT " + ", ".join(["%s::int"] * len(values))
    before = _queries._query2pg.cache_info()

    bulk.together([], (sql, values))
    first = _queries._query2pg.cache_info()
    bulk.together([], (sql, values))
    second = _queries._query2pg.cache_info()

    assert first.misses == before.misses + 1  # parsed, and kept
    assert (second.hits, second.misses) == (first.hits + 1, first.misses)  # not parsed again
    assert second.maxsize == 256  # bounded


def test_a_statement_past_the_raised_limits_is_parsed_every_time() -> None:
    values = list(range(600))
    sql = "SELECT " + ", ".join(["%s::int"] * len(values))
    before = _queries._query2pg.cache_info()

    bulk.together([], (sql, values))
    bulk.together([], (sql, values))

    assert _queries._query2pg.cache_info() == before  # neither kept nor looked up
