"""The Dagster UI renders our assets in a real browser: the asset graph, an asset's page, lineage.

The deployment of the end-to-end test (code server + webserver as subprocesses, Postgres-backed
instance) is opened in headless Chromium, Debian's ``chromium`` package driven by Playwright
through ``executable_path`` (a browser is never downloaded). Each page is checked for our assets
as the UI draws them (graph nodes, the asset's description and table, its upstream asset) and for
JavaScript errors, and saved as a screenshot under ``test-artifacts/browser/``.

Skipped, with the reason, where ``/usr/bin/chromium`` or Playwright is not installed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from template_pipeline.apps.simulator import SimSite
from template_pipeline.defs.assets import template_sync
from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.defs.tags import GROUP
from template_pipeline.domain.entities import NAMES as ALL_ENTITIES
from template_pipeline_tests.fixtures import deployment as harness

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# Flags for a headless browser in a container: no sandbox (no user namespaces in CI), no GPU,
# and nothing that phones home (only the loopback webserver may be contacted).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Tall enough for the graph to draw all eight assets: off-screen nodes are not rendered.
VIEWPORT = {"width": 1600, "height": 1800}
SCREENSHOTS = harness.ARTIFACTS_DIR / "browser"
PAGE_TIMEOUT_MS = 20_000
SITES = [SimSite(key="ui-east", api_key="ui-key-east", seed=21, paintings=5, users=3, orders=2)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"Debian's chromium is not installed ({CHROMIUM} is missing): "
            "`apt-get install -y chromium` (make browser-deps)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is not installed (make install)"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def live(
    postgres_server_url: str, tmp_path_factory, request
) -> Iterator[harness.SimulatedDeployment]:
    work_dir = tmp_path_factory.mktemp("browser_deployment")
    # No daemon: drawing the UI needs the webserver and the code location only.
    with harness.simulated_deployment(
        postgres_server_url, work_dir, SITES, with_daemon=False
    ) as live:
        reporter = harness.FailureReporter(live.deployment, "live", "browser")
        with reporter.installed(request.config):
            for site in live.site_keys:
                live.ui.add_dynamic_partition(sites_partitions.name, site)
            live.ui.dismiss_community_dialog()
            yield live


@dataclass
class Browsed:
    """A fresh browser page on the webserver, and the JavaScript errors it has raised so far."""

    page: Any
    js_errors: list[str] = field(default_factory=list)


@pytest.fixture
def browsed(browser: Any, live: harness.SimulatedDeployment, request) -> Iterator[Browsed]:
    context = browser.new_context(viewport=VIEWPORT, base_url=live.deployment.url)
    browsed = Browsed(page=context.new_page())
    browsed.page.set_default_timeout(PAGE_TIMEOUT_MS)
    # Uncaught exceptions of the UI's own scripts: a page can look drawn and still be broken.
    browsed.page.on("pageerror", lambda error: browsed.js_errors.append(str(error)))
    failed_before = request.session.testsfailed
    try:
        yield browsed
        if request.session.testsfailed > failed_before:
            _screenshot(browsed.page, f"FAILED-{request.node.name}")
    finally:
        context.close()


def _screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _graph_node(page: Any, asset: str) -> Any:
    """An asset as a node of a lineage graph (an SVG ``foreignObject`` holding its name)."""
    return page.locator("svg foreignObject").get_by_text(asset, exact=True)


def _drawn_nodes(page: Any) -> set[str]:
    names = page.locator("svg foreignObject [data-tooltip]").evaluate_all(
        "elements => elements.map(e => e.getAttribute('data-tooltip'))"
    )
    return set(names) & set(ALL_ENTITIES)


def _let_status_load(page: Any) -> None:
    """Nodes fill their partition status in after the graph is drawn; the screenshot is more
    useful with it, but its timing is not what the test checks."""
    with contextlib.suppress(Exception):
        page.locator("svg foreignObject").get_by_text("Loading").first.wait_for(
            state="detached", timeout=5_000
        )


def test_the_asset_graph_draws_every_asset(browsed: Browsed) -> None:
    page = browsed.page
    page.goto(f"/locations/{harness.LOCATION_NAME}/asset-groups/{GROUP}")
    _graph_node(page, "order_items").wait_for()
    _let_status_load(page)
    shot = _screenshot(page, "asset-graph")
    assert _drawn_nodes(page) == set(ALL_ENTITIES)
    assert browsed.js_errors == []
    assert shot.stat().st_size > 0


def test_an_asset_page_shows_its_description_table_and_upstream_asset(browsed: Browsed) -> None:
    page = browsed.page
    description = template_sync.descriptions_by_key[dg.AssetKey("order_items")]
    page.goto("/assets/order_items")
    page.get_by_text(description, exact=True).wait_for()
    # A link to the upstream asset; its accessible name starts with the status icon's label.
    page.get_by_role("link", name=re.compile(r"\borders$")).first.wait_for()
    _screenshot(page, "asset-order_items")
    body = page.inner_text("body")
    # The table the IO manager writes is the asset's metadata.
    assert "template_order_items" in body
    assert "Upstream assets" in body
    assert browsed.js_errors == []


def test_an_assets_lineage_view_draws_its_upstream_asset(browsed: Browsed) -> None:
    page = browsed.page
    page.goto("/assets/order_items?view=lineage")
    _graph_node(page, "orders").wait_for()
    _let_status_load(page)
    _screenshot(page, "lineage-order_items")
    assert _drawn_nodes(page) == {"orders", "order_items"}
    assert browsed.js_errors == []
