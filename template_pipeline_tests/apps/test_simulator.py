"""The Template export API simulator, over real HTTP.

Behaviour under test: records are generated deterministically from the seed, look like what
Template sites send (mixed number and date forms, optional and extra fields) and their invalid
records are exactly the ones listed in ``SiteData.invalid_ids``; the API checks the key, serves
each site under its path prefix and the first one at the root, paginates by id with a server
page cap without losing or repeating a record, answers in both envelopes, keeps ``stats``
consistent with the lists and with mutations; every fault kind behaves as configured,
deterministically; the server listens on a free port and releases it when stopped; the sites it
describes load through the real site registry.
"""

from __future__ import annotations

import socket
import time
from decimal import Decimal

import orjson
import pytest
import requests

from template_pipeline.apps.simulator import (
    ENDPOINTS,
    INVALID_KINDS,
    LIST_ENDPOINTS,
    Faults,
    SimSite,
    SimulatorServer,
    build_app,
    demo_sites,
    generate_site_data,
)
from template_pipeline.apps.simulator.app import SiteRuntime, format_retry_after

TIMEOUT = 5

ALPHA = SimSite(
    key="alpha",
    api_key="key-alpha",
    name="Atelier Alpha",
    seed=7,
    paintings=57,
    page_cap=10,
    invalid_ratio=0.1,
)
BETA = SimSite(
    key="beta",
    api_key="key-beta",
    seed=8,
    paintings=23,
    users=9,
    orders=11,
    envelope="named",
    page_cap=7,
)
MUT = SimSite(key="mut", api_key="key-mut", seed=9, paintings=12, orders=5, invalid_ratio=0.0)
FAULT_SITES = {
    "f-errors": Faults(error_rate=1.0),
    "f-429": Faults(rate_limit_every=3, retry_after=0.05),
    "f-429-whole": Faults(rate_limit_every=1, retry_after=1.0),
    "f-slow": Faults(slow_ms=60),
    "f-html": Faults(html_every=2),
    "f-trunc": Faults(truncate_every=2),
    "f-offset": Faults(ignore_offset=True),
    "f-script": Faults(script=[500, 503, 429, 200, 599]),
    "f-capped": Faults(error_rate=1.0, max_consecutive_faults=2),
}
SITES = [
    ALPHA,
    BETA,
    MUT,
    *(
        SimSite(key=key, api_key=f"key-{key}", paintings=12, page_cap=5, faults=faults)
        for key, faults in FAULT_SITES.items()
    ),
]
KEYS = {site.key: site.api_key for site in SITES}


@pytest.fixture(scope="module")
def server():
    with SimulatorServer(SITES) as running:
        yield running


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


def get(http, server, key, endpoint, api_key=None, **params) -> requests.Response:
    headers = {"X-API-Key": KEYS[key] if api_key is None else api_key}
    url = f"{server.base_url(key)}api/export/{endpoint}"
    return http.get(url, headers=headers, params=params, timeout=TIMEOUT)


def read_all_pages(http, server, key, endpoint, limit=50) -> list[list[dict]]:
    """Pages until the first empty one (never more than 100 requests)."""
    entity = LIST_ENDPOINTS[endpoint]
    named = next(site for site in SITES if site.key == key).envelope == "named"
    pages, offset = [], 0
    for _ in range(100):
        response = get(http, server, key, endpoint, limit=limit, offset=offset)
        assert response.status_code == 200, response.text
        body = response.json()
        page = body[entity] if named else body["data"]
        if not page:
            return pages
        pages.append(page)
        offset += len(page)
    raise AssertionError(f"{key}/{endpoint}: no empty page after 100 pages")


# --- generation --------------------------------------------------------------------------------


def test_generation_is_deterministic_by_seed():
    first, again = generate_site_data(ALPHA), generate_site_data(ALPHA)
    other_seed = generate_site_data(SimSite(key="alpha", api_key="k", seed=8, paintings=57))
    for table in ("settings", "paintings", "users", "orders", "exhibitions", "custom_requests"):
        assert getattr(first, table) == getattr(again, table), table
    assert first.invalid_kinds == again.invalid_kinds
    assert first.stats() == again.stats()
    assert first.paintings != other_seed.paintings


def test_generated_records_look_like_template_exports():
    data = generate_site_data(
        SimSite(
            key="big", api_key="k", seed=3, paintings=400, users=120, orders=150, invalid_ratio=0.0
        )
    )
    paintings, users, orders = data.paintings, data.users, data.orders
    assert [p["id"] for p in paintings] == list(range(1, 401))
    # Numbers as numbers and as text, optional fields absent, extra fields, accents.
    assert {type(p["price"]) for p in paintings} == {float, str}
    assert {type(p["year"]) for p in paintings if "year" in p} == {int, str}
    assert any("year" not in p for p in paintings)
    assert any("dimensions" in p for p in paintings)
    assert any(ch in p["name"] for p in paintings for ch in "éèêàç")
    assert {p["status"] for p in paintings} == {"Disponible", "Vendu", "Réservé"}
    assert all(p["image"] == f"Images/painting_{p['id']}.jpg" for p in paintings)
    assert any("T" in u["create_date"] for u in users)
    assert any(" " in u["create_date"] for u in users)
    assert any("role" not in u for u in users)
    assert {u.get("role") for u in users} <= {"admin", "user", None}
    assert len({u["email"] for u in users}) == len(users)
    painting_ids = {p["id"] for p in paintings}
    for order in orders:
        assert order["items"], order
        assert {item["painting_id"] for item in order["items"]} <= painting_ids
        total = sum(Decimal(str(i["price"])) * i["quantity"] for i in order["items"])
        assert Decimal(str(order["total_price"])) == total
    settings = {entry["key"]: entry["value"] for entry in data.settings}
    assert settings["stripe_secret_key"] == settings["smtp_password"] == "***MASKED***"
    assert Decimal(settings["saas_site_price_cache"]) > 0
    assert settings["site_name"] == "big"


def _looks_invalid(entity: str, record: dict) -> bool:
    """An independent statement of what the generator breaks on purpose."""

    def bad_text(value) -> bool:
        return not isinstance(value, str) or not value or "\x00" in value

    def negative(value) -> bool:
        return value is not None and Decimal(str(value)) < 0

    if not isinstance(record["id"], int):
        return True
    if entity == "paintings":
        return (
            bad_text(record.get("name"))
            or negative(record["price"])
            or record["quantity"] < 0
            or not record.get("category")
            or not record.get("image")
        )
    if entity == "users":
        return (
            bad_text(record.get("name"))
            or "@" not in record.get("email", "")
            or record.get("role", "user") not in ("admin", "user")
        )
    if entity == "orders":
        return (
            any(f not in record for f in ("total_price", "customer_name", "email", "order_date"))
            or "\x00" in record["customer_name"]
            or any(negative(item["price"]) for item in record["items"])
        )
    if entity == "exhibitions":
        return bad_text(record.get("title"))
    if entity == "custom_requests":
        return negative(record.get("budget")) or "\x00" in record["message"]
    raise AssertionError(entity)


@pytest.mark.parametrize("entity", list(INVALID_KINDS))
def test_invalid_records_are_exactly_the_listed_ones(entity):
    site = SimSite(
        key="bad",
        api_key="k",
        seed=5,
        paintings=300,
        users=100,
        orders=100,
        exhibitions=30,
        custom_requests=60,
        invalid_ratio=0.1,
    )
    data = generate_site_data(site)
    records = data.records(entity)
    flagged = {r["id"] for r in records if _looks_invalid(entity, r)}
    assert flagged == data.invalid_ids[entity]
    assert len(flagged) == round(len(records) * 0.1)
    # Every kind of breakage shows up, in rotation.
    assert set(data.invalid_kinds[entity].values()) == set(INVALID_KINDS[entity])


@pytest.mark.parametrize("entity", list(INVALID_KINDS))
def test_invalid_records_are_what_the_models_reject(entity):
    from template_pipeline.domain.validation import validate_records

    site = SimSite(
        key="bad",
        api_key="k",
        seed=6,
        paintings=120,
        users=60,
        orders=60,
        exhibitions=20,
        custom_requests=30,
        invalid_ratio=0.1,
    )
    data = generate_site_data(site)
    served = orjson.loads(orjson.dumps(data.records(entity)))  # as a client decodes them
    batch = validate_records(entity, served, base_url="http://127.0.0.1/t/bad/")
    # The ids as served: a non-integer id (12.5) is rejected under its own text.
    assert {reject.template_id for reject in batch.rejects} == {
        str(record_id) for record_id in data.invalid_ids[entity]
    }
    assert len(batch.rows) == len(served) - len(data.invalid_ids[entity])


@pytest.mark.parametrize(
    ("count", "ratio", "expected"),
    [(0, 0.5, 0), (40, 0.0, 0), (4, 0.03, 1), (40, 0.03, 1), (200, 0.03, 6), (5, 1.0, 5)],
)
def test_invalid_share(count, ratio, expected):
    site = SimSite(key="s", api_key="k", paintings=count, invalid_ratio=ratio)
    assert len(generate_site_data(site).invalid_ids["paintings"]) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": "Not A Slug"}, "slug"),
        ({"api_key": ""}, "api_key"),
        ({"api_key": "***MASKED***"}, "api_key"),
        ({"paintings": -1}, "paintings"),
        ({"envelope": "xml"}, "envelope"),
        ({"page_cap": 0}, "page_cap"),
        ({"invalid_ratio": 1.5}, "invalid_ratio"),
        ({"faults": Faults(error_rate=2.0)}, "error_rate"),
        ({"faults": Faults(script=[42])}, "script"),
        ({"faults": Faults(script=[204])}, "script"),
    ],
)
def test_sim_site_rejects_bad_definitions(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimSite(**{"key": "site-x", "api_key": "k", **kwargs})


def test_api_key_is_kept_out_of_reprs():
    assert "key-alpha" not in repr(ALPHA)
    assert "key-alpha" not in repr(generate_site_data(ALPHA))


def test_build_app_rejects_duplicate_and_missing_sites():
    with pytest.raises(ValueError, match="listed twice"):
        build_app([ALPHA, ALPHA])
    with pytest.raises(ValueError, match="at least one"):
        build_app([])


# --- keys, routing, parameters -------------------------------------------------------------------


@pytest.mark.parametrize("api_key", ["", "wrong", "key-beta", "key-alpha "])
def test_wrong_or_missing_key_is_401(http, server, api_key):
    headers = {"X-API-Key": api_key} if api_key else {}
    url = f"{server.base_url('alpha')}api/export/paintings"
    response = http.get(url, headers=headers, timeout=TIMEOUT)
    assert response.status_code == 401
    assert response.json() == {"success": False, "error": "Invalid API key"}


def test_unknown_site_endpoint_or_path_is_404_json(http, server):
    headers = {"X-API-Key": "key-alpha"}
    for url in (
        f"{server.url}/t/nobody/api/export/paintings",
        f"{server.base_url('alpha')}api/export/artists",
        f"{server.url}/somewhere/else",
    ):
        response = http.get(url, headers=headers, timeout=TIMEOUT)
        assert response.status_code == 404, url
        assert response.json()["success"] is False


def test_root_serves_the_first_site(http, server):
    headers = {"X-API-Key": "key-alpha"}
    root = http.get(f"{server.url}/api/export/users", headers=headers, timeout=TIMEOUT)
    prefixed = get(http, server, "alpha", "users")
    assert root.status_code == prefixed.status_code == 200
    assert root.json() == prefixed.json()
    other = http.get(
        f"{server.url}/api/export/users", headers={"X-API-Key": "key-beta"}, timeout=TIMEOUT
    )
    assert other.status_code == 401


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "-3"}, {"limit": "ten"}, {"offset": "-1"}, {"offset": "1.5"}],
)
def test_bad_pagination_parameters_are_400(http, server, params):
    response = get(http, server, "alpha", "paintings", **params)
    assert response.status_code == 400
    assert "paintings" in response.json()["error"]


def test_rejected_requests_do_not_count_towards_faults(http, server):
    before = server.request_count("beta")
    get(http, server, "beta", "users", api_key="wrong")
    get(http, server, "beta", "users", limit="x")
    get(http, server, "beta", "nothing")
    assert server.request_count("beta") == before
    get(http, server, "beta", "users")
    assert server.request_count("beta") == before + 1


# --- pagination and envelopes ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["alpha", "beta"])
@pytest.mark.parametrize("endpoint", list(LIST_ENDPOINTS))
def test_pagination_under_page_cap_loses_and_repeats_nothing(http, server, key, endpoint):
    site = next(s for s in SITES if s.key == key)
    pages = read_all_pages(http, server, key, endpoint, limit=50)
    assert all(len(page) <= site.page_cap for page in pages)
    served = [record for page in pages for record in page]
    expected = server.data(key).records(LIST_ENDPOINTS[endpoint])
    assert served == expected
    assert [r["id"] for r in served] == sorted({r["id"] for r in served})


def test_large_pages_up_to_the_cap(http):
    site = SimSite(key="large", api_key="k", paintings=2500, page_cap=1000)
    with SimulatorServer([site]) as running:
        url = running.base_url("large") + "api/export/paintings"
        sizes = []
        for offset in range(0, 4000, 1000):
            body = http.get(
                url,
                headers={"X-API-Key": "k"},
                timeout=TIMEOUT,
                params={"limit": 5000, "offset": offset},
            ).json()
            assert body["total"] == 2500
            sizes.append(body["count"])
            assert len(body["data"]) == body["count"]
    assert sizes == [1000, 1000, 500, 0]


@pytest.mark.parametrize(
    ("key", "endpoint", "top_keys"),
    [
        ("alpha", "paintings", {"success", "count", "total", "data"}),
        ("alpha", "custom-requests", {"success", "count", "total", "data"}),
        ("alpha", "settings", {"success", "count", "data"}),
        ("alpha", "stats", {"stats"}),
        ("alpha", "full", {"success", "data", "tables_count", "total_records"}),
        ("beta", "paintings", {"paintings"}),
        ("beta", "users", {"users"}),
        ("beta", "orders", {"orders"}),
        ("beta", "exhibitions", {"exhibitions"}),
        ("beta", "custom-requests", {"custom_requests"}),
        ("beta", "settings", {"data"}),
        ("beta", "stats", {"stats"}),
        ("beta", "full", {"success", "data", "tables_count", "total_records"}),
    ],
)
def test_envelopes(http, server, key, endpoint, top_keys):
    response = get(http, server, key, endpoint)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert set(response.json()) == top_keys


def test_every_endpoint_is_covered_by_the_envelope_test():
    assert set(ENDPOINTS) == {
        "settings",
        "paintings",
        "users",
        "orders",
        "exhibitions",
        "custom-requests",
        "stats",
        "full",
    }


def test_success_envelope_counts_and_settings(http, server):
    body = get(http, server, "alpha", "paintings", limit=4, offset=55).json()
    assert (body["success"], body["count"], body["total"]) == (True, 2, 57)
    settings = get(http, server, "alpha", "settings").json()
    assert settings["count"] == len(settings["data"]) == len(server.data("alpha").settings)
    assert {"key", "value"} == set(settings["data"][0])


def test_full_holds_every_table(http, server):
    body = get(http, server, "beta", "full").json()
    data = server.data("beta")
    assert body["tables_count"] == 6
    assert body["data"]["paintings"] == data.paintings
    assert body["data"]["custom_requests"] == data.custom_requests
    assert body["total_records"] == sum(len(rows) for rows in body["data"].values())


def test_stats_are_consistent_with_the_lists(http, server):
    stats = get(http, server, "alpha", "stats").json()["stats"]
    paintings = [r for page in read_all_pages(http, server, "alpha", "paintings") for r in page]
    orders = [r for page in read_all_pages(http, server, "alpha", "orders") for r in page]
    assert stats["paintings"] == len(paintings) == 57
    assert stats["orders"] == len(orders)
    assert stats["users"] == get(http, server, "alpha", "users").json()["total"]
    assert stats["available_paintings"] == sum(p["status"] == "Disponible" for p in paintings)
    assert stats["sold_paintings"] == sum(p["status"] == "Vendu" for p in paintings)
    # Orders broken on purpose may have no total at all; the others all count.
    revenue = sum(Decimal(str(o["total_price"])) for o in orders if "total_price" in o)
    assert Decimal(stats["revenue"]) == revenue
    assert stats["last_updated"].endswith("Z")


# --- mutations ---------------------------------------------------------------------------------


def test_mutations_show_in_the_next_response_and_in_stats(http, server):
    data = server.data("mut")
    before = get(http, server, "mut", "stats").json()["stats"]

    data.update_painting(3, price="9999.50", status="Vendu")
    data.delete_painting(5)
    added = data.add_painting(name="Les Nymphéas", price=1500.0)
    order = data.add_order(items=[(added["id"], 2)])

    paintings = get(http, server, "mut", "paintings").json()["data"]
    by_id = {p["id"]: p for p in paintings}
    assert by_id[3]["price"] == "9999.50" and by_id[3]["status"] == "Vendu"
    assert 5 not in by_id
    assert by_id[added["id"]]["name"] == "Les Nymphéas"
    assert [p["id"] for p in paintings] == sorted(by_id)
    served_order = get(http, server, "mut", "orders").json()["data"][-1]
    assert served_order == order
    assert served_order["total_price"] == "3000.00"

    after = get(http, server, "mut", "stats").json()["stats"]
    assert after["paintings"] == before["paintings"]  # one deleted, one added
    assert after["orders"] == before["orders"] + 1
    assert Decimal(after["revenue"]) == Decimal(before["revenue"]) + Decimal("3000.00")
    assert after["last_updated"] > before["last_updated"]


def test_mutators_keep_ids_unique_and_ordered():
    data = generate_site_data(SimSite(key="m", api_key="k", paintings=5))
    data.delete_painting(3)
    data.add_painting(id=3)
    assert [p["id"] for p in data.paintings] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="already exists"):
        data.add_painting(id=4)
    with pytest.raises(ValueError, match="cannot be changed"):
        data.update_painting(2, id=9)
    with pytest.raises(KeyError, match="no paintings with id 42"):
        data.delete_painting(42)
    first = data.touch()
    assert data.touch() > first
    data.set_setting("site_name", "Renommé")
    assert {"key": "site_name", "value": "Renommé"} in data.settings


# --- faults ------------------------------------------------------------------------------------


def test_error_rate_answers_5xx_json(http, server):
    statuses = [get(http, server, "f-errors", "users").status_code for _ in range(6)]
    assert set(statuses) <= {500, 502, 503}
    body = get(http, server, "f-errors", "users").json()
    assert body["success"] is False


def test_max_consecutive_faults_lets_a_retrying_client_through(http, server):
    statuses = [get(http, server, "f-capped", "users").status_code for _ in range(6)]
    assert [s == 200 for s in statuses] == [False, False, True, False, False, True]


def test_rate_limit_every_nth_with_retry_after(http, server):
    responses = [get(http, server, "f-429", "paintings") for _ in range(6)]
    assert [r.status_code for r in responses] == [200, 200, 429, 200, 200, 429]
    assert responses[2].headers["Retry-After"] == "0.05"
    assert responses[2].json()["success"] is False
    whole = get(http, server, "f-429-whole", "paintings")
    assert (whole.status_code, whole.headers["Retry-After"]) == (429, "1")


@pytest.mark.parametrize(
    ("seconds", "header"), [(1.0, "1"), (2, "2"), (0.05, "0.05"), (1.5, "1.5"), (0, "0")]
)
def test_retry_after_format(seconds, header):
    assert format_retry_after(seconds) == header


def test_slow_responses(http, server):
    started = time.perf_counter()
    response = get(http, server, "f-slow", "stats")
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.06


def test_html_page_with_status_200(http, server):
    first, second = (get(http, server, "f-html", "paintings") for _ in range(2))
    assert first.headers["content-type"].startswith("application/json")
    assert second.status_code == 200
    assert second.headers["content-type"].startswith("text/html")
    assert second.text.lstrip().startswith("<!DOCTYPE html>")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(second.content)


def test_truncated_json_with_status_200(http, server):
    whole, cut = (get(http, server, "f-trunc", "paintings") for _ in range(2))
    assert cut.status_code == 200
    assert cut.content == whole.content[: len(whole.content) // 2]
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(cut.content)


def test_ignore_offset_always_serves_the_first_page(http, server):
    first = get(http, server, "f-offset", "paintings", limit=5, offset=0).json()["data"]
    later = get(http, server, "f-offset", "paintings", limit=5, offset=5).json()["data"]
    assert first == later and len(first) == 5


def test_script_then_normal(http, server):
    responses = [get(http, server, "f-script", "orders") for _ in range(7)]
    assert [r.status_code for r in responses] == [500, 503, 429, 200, 599, 200, 200]
    assert "Retry-After" in responses[2].headers


def test_fault_decisions_are_deterministic_and_proportional():
    site = SimSite(key="noisy", api_key="k", seed=4, faults=Faults(error_rate=0.3))
    data = generate_site_data(SimSite(key="noisy", api_key="k", paintings=0))

    def decisions() -> list[int]:
        runtime = SiteRuntime(site=site, data=data)
        return [runtime.next_fault().status for _ in range(2000)]

    first = decisions()
    assert first == decisions()
    assert 0.25 < sum(status != 200 for status in first) / len(first) < 0.35
    assert set(first) == {200, 500, 502, 503}


def test_demo_sites():
    sites = {site.key: site for site in demo_sites()}
    assert list(sites) == ["atelier-marie", "galerie-lumiere", "studio-ombre"]
    assert sites["atelier-marie"].envelope == "success"
    assert (sites["galerie-lumiere"].envelope, sites["galerie-lumiere"].page_cap) == ("named", 25)
    ombre = sites["studio-ombre"]
    assert ombre.faults.slow_ms == 50 and ombre.faults.retry_after == 1
    runtime = SiteRuntime(site=ombre, data=generate_site_data(ombre))
    statuses = [runtime.next_fault().status for _ in range(1000)]
    assert statuses[0] == 500 and 429 in statuses
    assert statuses.count(500) > 1
    # A client retrying twice always gets through.
    longest_run, run = 0, 0
    for status in statuses:
        run = run + 1 if status != 200 else 0
        longest_run = max(longest_run, run)
    assert longest_run <= 2


# --- the server itself -------------------------------------------------------------------------


def _port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_server_takes_a_free_port_and_releases_it():
    simulator = SimulatorServer([MUT])
    with pytest.raises(RuntimeError, match="not started"):
        _ = simulator.url
    simulator.start()
    try:
        port = simulator.port
        assert port > 0 and _port_is_open(port)
        assert simulator.url == f"http://127.0.0.1:{port}"
        assert simulator.base_url("mut") == f"http://127.0.0.1:{port}/t/mut/"
        response = requests.get(
            simulator.base_url("mut") + "api/export/stats",
            headers={"X-API-Key": "key-mut"},
            timeout=TIMEOUT,
        )
        assert response.status_code == 200
    finally:
        simulator.stop()
    assert not _port_is_open(port)
    simulator.stop()  # idempotent
    with pytest.raises(KeyError, match="not simulated here"):
        simulator.data("nobody")


def test_sites_file_entries_load_through_the_site_registry(tmp_path, server):
    from template_pipeline.apps.simulator import config
    from template_pipeline.domain import sites as registry_module

    # The simulator repeats these two constants to stay free of Dagster; keep them equal.
    assert config.SLUG_RE.pattern == registry_module.SLUG_RE.pattern
    assert config.MASKED == registry_module.MASKED

    path = registry_module.write_sites_file(tmp_path / "sites.yaml", server.sites_file_entries())
    registry = registry_module.load_sites_file(path, environ=server.api_key_env())
    alpha = registry.get("alpha")
    assert alpha.base_url == server.base_url("alpha")
    assert alpha.api_key == "key-alpha"
    assert alpha.api_key_env == "TEMPLATE_KEY_ALPHA"
    assert alpha.name == "Atelier Alpha"
    assert registry.get("f-429").api_key_env == "TEMPLATE_KEY_F_429"
    assert len(registry) == len(SITES)


def test_settings_are_whole_without_limit_and_pageable_with_one(http, server):
    all_settings = server.data("beta").settings
    assert len(all_settings) > 7  # more than beta's page cap
    assert get(http, server, "beta", "settings").json()["data"] == all_settings
    pages = [
        get(http, server, "beta", "settings", limit=5, offset=offset).json()["data"]
        for offset in range(0, len(all_settings) + 5, 5)
    ]
    assert pages[-1] == []
    assert [entry for page in pages for entry in page] == all_settings


# --- hostile servers ---------------------------------------------------------------------------

HOSTILE_KEY = "sk-HOSTILE/9+x=y"
HOSTILE_FAULTS = {
    "h-revoke": Faults(revoke_after=2),
    "h-halfway": Faults(fail_after=2),
    "h-rotate": Faults(rotate_ignoring_offset=3),
    "h-endless": Faults(never_empty=True),
    "h-poison": Faults(
        poison={1: "huge-id", 2: "price-nan", 3: "price-1e400", 4: "deep"}, deep_levels=50
    ),
    "h-trickle": Faults(trickle_bytes=64, trickle_interval_ms=20),
    "h-stall": Faults(stall_after_bytes=10, stall_ms=300),
    "h-reset": Faults(reset_after_bytes=10),
    "h-bomb": Faults(gzip_bomb_bytes=64 << 20),
    "h-echo": Faults(echo_key=True, script=[500], html_every=2),
    "h-redirect": Faults(redirect_with_key=True),
}
HOSTILE_SITES = [
    SimSite(
        key=key, api_key=HOSTILE_KEY, paintings=12, page_cap=5, invalid_ratio=0.0, faults=faults
    )
    for key, faults in HOSTILE_FAULTS.items()
]


@pytest.fixture(scope="module")
def hostile():
    with SimulatorServer(HOSTILE_SITES) as running:
        yield running


def hostile_get(http, server, key, endpoint, **params) -> requests.Response:
    url = f"{server.base_url(key)}api/export/{endpoint}"
    return http.get(url, headers={"X-API-Key": HOSTILE_KEY}, params=params, timeout=TIMEOUT)


def test_hostile_faults_stay_off_by_default():
    assert not Faults().active and not Faults(poison_bytes=5, deep_levels=3).active
    assert all(faults.active for faults in HOSTILE_FAULTS.values())
    from template_pipeline.apps.simulator import hostile as module
    from template_pipeline.apps.simulator.config import POISON_KINDS

    assert set(POISON_KINDS) == module.MADE_HERE
    with pytest.raises(ValueError, match="poison kinds must be among"):
        SimSite(key="x", api_key="k", faults=Faults(poison={1: "arsenic"}))


def test_revoked_key_and_failing_half_way(http, hostile):
    revoked = [hostile_get(http, hostile, "h-revoke", "stats").status_code for _ in range(4)]
    halfway = [hostile_get(http, hostile, "h-halfway", "stats").status_code for _ in range(4)]
    assert revoked == [200, 200, 401, 401] and halfway == [200, 200, 500, 500]


def test_rotating_pages_ignore_offset_and_never_repeat_exactly(http, hostile):
    pages = [
        [
            r["id"]
            for r in hostile_get(
                http, hostile, "h-rotate", "paintings", limit=5, offset=5 * n
            ).json()["data"]
        ]
        for n in range(3)
    ]
    assert pages[0] != pages[1] != pages[2]
    assert pages[1][0] - pages[0][0] == 3  # each page starts 3 records further on


def test_a_listing_that_never_ends(http, hostile):
    beyond = hostile_get(http, hostile, "h-endless", "paintings", limit=5, offset=100)
    ids = [record["id"] for record in beyond.json()["data"]]
    assert ids == [101, 102, 103, 104, 105]


def test_poison_records_carry_raw_tokens_no_serialiser_writes(http, hostile):
    body = hostile_get(http, hostile, "h-poison", "paintings", limit=5, offset=0).content
    assert b'"id":' + b"9" * 5000 in body and b":NaN" in body and b":1e400" in body
    assert b"[" * 50 + b"]" * 50 in body
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)
    import json

    page = json.loads(body, parse_constant=str, parse_float=str, parse_int=str)["data"]
    assert [r["id"] for r in page][1:] == ["2", "3", "4", "5"]


def test_trickled_and_stalled_bodies_are_whole_but_slow(http, hostile):
    for key, at_least in (("h-trickle", 0.04), ("h-stall", 0.3)):
        started = time.perf_counter()
        response = hostile_get(http, hostile, key, "stats")
        assert time.perf_counter() - started >= at_least
        assert response.status_code == 200 and response.json()["stats"]["paintings"] == 12


def test_a_connection_cut_mid_body(http, hostile):
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        hostile_get(http, hostile, "h-reset", "stats").content  # noqa: B018


def test_a_gzip_bomb_is_small_on_the_wire_and_huge_inflated(hostile):
    import zlib

    url = f"{hostile.base_url('h-bomb')}api/export/paintings"
    with requests.get(
        url, headers={"X-API-Key": HOSTILE_KEY}, stream=True, timeout=TIMEOUT
    ) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        wire = response.raw.read(decode_content=False)
    inflater, inflated, buffer = zlib.decompressobj(16 + zlib.MAX_WBITS), 0, wire
    while buffer:
        inflated += len(inflater.decompress(buffer, 1 << 20))
        buffer = inflater.unconsumed_tail
    assert inflater.eof and inflated >= 64 << 20 and len(wire) < 1 << 20


def test_the_key_echoed_in_error_bodies_and_html(http, hostile):
    from urllib.parse import quote, quote_plus

    error = hostile_get(http, hostile, "h-echo", "stats")
    html = hostile_get(http, hostile, "h-echo", "stats")
    assert error.status_code == 500
    message = error.json()["error"]
    for form in (
        HOSTILE_KEY,
        quote(HOSTILE_KEY, safe=""),
        quote_plus(HOSTILE_KEY),
        HOSTILE_KEY.replace("/", "\\/"),
    ):
        assert form in message
    assert html.headers["content-type"].startswith("text/html") and HOSTILE_KEY in html.text


def test_redirect_with_the_key_in_its_query(http, hostile):
    from urllib.parse import quote_plus

    first = http.get(
        f"{hostile.base_url('h-redirect')}api/export/stats",
        headers={"X-API-Key": HOSTILE_KEY},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert first.status_code == 302
    assert first.headers["Location"].endswith(f"_r=1&token={quote_plus(HOSTILE_KEY)}")
    followed = hostile_get(http, hostile, "h-redirect", "stats")
    assert followed.status_code == 200 and "stats" in followed.json()


# --- churn (the changed re-sync of the large-site benchmark) ------------------------------------


def test_churn_changes_deletes_and_adds_shares_of_every_table_deterministically():
    from template_pipeline.apps.simulator.churn import SUFFIX, churn
    from template_pipeline.apps.simulator.data import RECORD_ENTITIES, generate_site_data

    def fresh():
        return generate_site_data(
            SimSite(key="churned", api_key="k", seed=3, paintings=400, users=100, orders=200)
        )

    data, twin = fresh(), fresh()
    before = {entity: [dict(r) for r in data.records(entity)] for entity in RECORD_ENTITIES}
    counts = churn(data, changed=0.10, deleted=0.05, added=0.05, seed=1)

    paintings = counts["paintings"]
    assert (paintings.deleted, paintings.added) == (20, 20)
    assert 35 <= paintings.changed <= 40  # invalid records may lack a text name
    after = data.records("paintings")
    assert len(after) == 400
    assert sum(1 for p in after if str(p.get("name", "")).endswith(SUFFIX)) >= paintings.changed
    numeric = [p["id"] for p in after if isinstance(p["id"], (int, float))]
    assert numeric == sorted(numeric)  # pagination slices the list in id order
    old_ids = {p["id"] for p in before["paintings"]}
    new = [p for p in after if p["id"] not in old_ids]
    assert len(new) == 20 and min(p["id"] for p in new) > max(
        i for i in old_ids if isinstance(i, (int, float))
    )
    for entity in RECORD_ENTITIES:
        assert counts[entity].deleted == round(len(before[entity]) * 0.05)
    # The same seed churns the same records.
    assert churn(twin, changed=0.10, deleted=0.05, added=0.05, seed=1) == counts
    assert twin.records("paintings") == after


def test_churn_refuses_shares_out_of_range():
    from template_pipeline.apps.simulator.churn import churn
    from template_pipeline.apps.simulator.data import generate_site_data

    data = generate_site_data(SimSite(key="churned", api_key="k"))
    with pytest.raises(ValueError, match="changed"):
        churn(data, changed=1.5)
    with pytest.raises(ValueError, match="exceed"):
        churn(data, changed=0.6, deleted=0.6)


# --- random faults (the soak) --------------------------------------------------------------------

CHAOS = {"5xx": 0.1, "429": 0.1, "slow": 0.1, "reset": 0.1, "truncated": 0.1}


def test_random_faults_are_drawn_per_kind_and_counted():
    site = SimSite(key="chaos", api_key="k", seed=9, faults=Faults(fault_rates=CHAOS))
    data = generate_site_data(SimSite(key="chaos", api_key="k", paintings=0))

    def decisions() -> tuple[list[str], SiteRuntime]:
        runtime = SiteRuntime(site=site, data=data)
        return [runtime.next_fault().kind for _ in range(3000)], runtime

    kinds, runtime = decisions()
    assert kinds == decisions()[0]  # deterministic from the seed
    counted = {kind: kinds.count(kind) for kind in CHAOS}
    assert dict(runtime.injected) == counted and runtime.faulted == sum(counted.values())
    # Each kind about a tenth of the requests, half of them served normally.
    assert all(0.07 < count / len(kinds) < 0.13 for count in counted.values()), counted
    assert 0.45 < kinds.count("") / len(kinds) < 0.55


def test_random_faults_leave_other_sites_sequences_alone():
    plain = SimSite(key="noisy", api_key="k", seed=4, faults=Faults(error_rate=0.3))
    data = generate_site_data(SimSite(key="noisy", api_key="k", paintings=0))
    runtime = SiteRuntime(site=plain, data=data)
    statuses = [runtime.next_fault().status for _ in range(50)]
    again = SiteRuntime(site=plain, data=data)
    assert statuses == [again.next_fault().status for _ in range(50)]
    assert set(runtime.injected) == {"5xx"}


@pytest.mark.parametrize(
    ("rates", "message"),
    [
        ({"teapot": 0.1}, "fault_rates kinds"),
        ({"5xx": 1.5}, "within"),
        (CHAOS | {"5xx": 0.7}, "add up"),
    ],
)
def test_random_fault_rates_are_validated(rates, message):
    with pytest.raises(ValueError, match=message):
        SimSite(key="x", api_key="k", faults=Faults(fault_rates=rates))


def test_random_faults_on_the_wire_and_their_counts_endpoint(http):
    faults = Faults(fault_rates={"reset": 0.5, "slow": 0.5}, slow_fault_ms=300)
    site = SimSite(key="wire", api_key="k-wire", seed=3, paintings=30, faults=faults)
    with SimulatorServer([site]) as server:
        outcomes = []
        for _ in range(8):
            started = time.perf_counter()
            try:
                response = http.get(
                    f"{server.base_url('wire')}api/export/paintings",
                    headers={"X-API-Key": "k-wire"},
                    timeout=TIMEOUT,
                )
                orjson.loads(response.content)
                outcomes.append("slow" if time.perf_counter() - started >= 0.3 else "served")
            except requests.exceptions.ChunkedEncodingError:  # the body was cut short
                outcomes.append("reset")
        counts = http.get(f"{server.url}/_simulator/faults", timeout=TIMEOUT).json()
        assert counts == server.fault_counts()
    injected = counts["wire"]["injected"]
    assert injected == {kind: outcomes.count(kind) for kind in ("reset", "slow")}
    assert counts["wire"]["requests"] == 8 and counts["wire"]["faulted"] == 8
