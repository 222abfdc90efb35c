"""Request metrics: every label value comes from a fixed set, so no request adds series."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from quart import Quart

from figserve.metrics import HTTP_METHODS, OTHER, UNMATCHED, method_label, status_label

FAST = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
# What HTTP allows in a method name (a token), so any of them reaches the app.
TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"


def request_series(text: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "figserve_http_requests_total"
    ]


async def scrape(app: Quart) -> list[dict[str, str]]:
    resp = await app.test_client().get("/metrics")
    return request_series(await resp.get_data(as_text=True))


def allowed_routes(app: Quart) -> set[str]:
    return {rule.rule for rule in app.url_map.iter_rules()} | {UNMATCHED}


async def test_junk_methods_do_not_grow_the_metrics(app):
    client = app.test_client()
    for i in range(300):
        await client.open(f"/nothing/{i}", method=f"JUNK{i}")
        await client.open("/fig/5_3", method=f"X{i}")
    series = await scrape(app)
    assert {s["method"] for s in series} <= HTTP_METHODS | {OTHER}
    assert len(series) <= 6, series


@FAST
@given(
    requests=st.lists(
        st.tuples(
            st.text(alphabet=TOKEN, min_size=1, max_size=12)
            | st.sampled_from(sorted(HTTP_METHODS)),
            # Not starting with "/": the test client would read "//x" as a host name.
            st.text(
                alphabet=st.characters(codec="utf-8", exclude_characters="?#"), max_size=30
            ).filter(lambda p: not p.startswith("/")),
        ),
        min_size=1,
        max_size=12,
    )
)
async def test_the_number_of_series_is_bounded_whatever_is_requested(app, requests):
    client = app.test_client()
    for method, path in requests:
        await client.open("/" + path, method=method)
    series = await scrape(app)
    routes = allowed_routes(app)
    for labels in series:
        assert labels["method"] in HTTP_METHODS | {OTHER}
        assert labels["route"] in routes
        assert labels["status"] == OTHER or 100 <= int(labels["status"]) <= 599
    # Every series is one of routes x methods x statuses the app itself can answer with.
    assert len(series) <= len(routes) * (len(HTTP_METHODS) + 1) * 20


def test_labels_of_request_values_are_from_fixed_sets():
    assert method_label("GET") == "GET"
    assert method_label("get") == OTHER  # methods are case-sensitive
    assert method_label("PROPFIND") == OTHER
    assert status_label(200) == "200"
    assert status_label(1000) == OTHER
