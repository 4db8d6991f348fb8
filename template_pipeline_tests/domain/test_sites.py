"""The site registry: the sites file, the single-site environment fallback, and every
configuration error, each naming the site and raised before any HTTP call."""

import pytest
import responses

from template_pipeline.defs.partitions import sites_partitions
from template_pipeline.domain.sites import SiteConfigError, load_registry, write_sites_file
from template_pipeline.domain.vocabulary import MASKED

SENTINEL = "sk-SENTINEL-registry-42"


def _write(tmp_path, sites):
    return write_sites_file(tmp_path / "sites.yaml", sites)


def _site(key="atelier-marie", **overrides):
    entry = {
        "key": key,
        "base_url": f"https://{key}.example",
        "api_key_env": "KEY_" + key.upper().replace("-", "_"),
    }
    entry.update(overrides)
    return entry


def test_partitions_definition_is_the_template_sites_dynamic_partitions():
    assert sites_partitions.name == "template_sites"


def test_sites_file_is_read_with_keys_from_the_environment(tmp_path):
    path = _write(
        tmp_path,
        [
            _site("atelier-marie", name="Atelier Marie"),
            _site("site-b", base_url="http://127.0.0.1:8000/t/site-b"),
        ],
    )
    env = {"TEMPLATE_SITES_FILE": str(path), "KEY_ATELIER_MARIE": "k1", "KEY_SITE_B": " k2 "}
    registry = load_registry(env)
    assert registry.keys() == ["atelier-marie", "site-b"]
    marie = registry.get("atelier-marie")
    assert marie.name == "Atelier Marie"
    assert marie.api_key == "k1"
    # A trailing slash keeps a path prefix when endpoint paths are joined to it.
    assert registry.get("site-b").base_url == "http://127.0.0.1:8000/t/site-b/"
    assert registry.get("site-b").api_key == "k2"
    assert registry.get("site-b").name == "site-b"


def test_single_site_from_base_url_and_api_key():
    env = {"TEMPLATE_BASE_URL": "https://solo.example/", "TEMPLATE_API_KEY": "k"}
    registry = load_registry(env)
    assert registry.keys() == ["default"]
    assert registry.get("default").api_key_env == "TEMPLATE_API_KEY"


def test_single_site_key_can_be_named():
    env = {
        "TEMPLATE_BASE_URL": "https://solo.example/",
        "TEMPLATE_API_KEY": "k",
        "TEMPLATE_SITE_KEY": "solo",
    }
    assert load_registry(env).keys() == ["solo"]


def test_sites_file_wins_over_single_site_variables(tmp_path):
    path = _write(tmp_path, [_site("from-file")])
    env = {
        "TEMPLATE_SITES_FILE": str(path),
        "KEY_FROM_FILE": "k",
        "TEMPLATE_BASE_URL": "https://solo.example/",
        "TEMPLATE_API_KEY": "k",
    }
    assert load_registry(env).keys() == ["from-file"]


def test_api_key_never_in_repr_or_str(tmp_path):
    path = _write(tmp_path, [_site()])
    registry = load_registry({"TEMPLATE_SITES_FILE": str(path), "KEY_ATELIER_MARIE": SENTINEL})
    site = registry.get("atelier-marie")
    assert SENTINEL not in repr(site)
    assert SENTINEL not in str(site)
    assert SENTINEL not in repr(registry)


@pytest.mark.parametrize(
    ("sites", "env", "message"),
    [
        ([_site("Bad Key")], {}, "key must be a slug"),
        ([_site("-leading")], {}, "key must be a slug"),
        ([_site("a" * 64)], {}, "key must be a slug"),
        ([_site(), _site()], {"KEY_ATELIER_MARIE": "k"}, "'atelier-marie' is listed twice"),
        ([_site()], {}, "site 'atelier-marie': environment variable KEY_ATELIER_MARIE"),
        ([_site()], {"KEY_ATELIER_MARIE": "  "}, "KEY_ATELIER_MARIE is empty"),
        ([_site()], {"KEY_ATELIER_MARIE": MASKED}, "masked placeholder"),
        ([_site(base_url="ftp://x.example")], {"KEY_ATELIER_MARIE": "k"}, "absolute http(s) URL"),
        ([_site(base_url="")], {"KEY_ATELIER_MARIE": "k"}, "base_url is missing"),
        ([_site(base_url="https://x.example/?a=1")], {"KEY_ATELIER_MARIE": "k"}, "query"),
        ([_site(api_key_env="not a var")], {}, "api_key_env must name"),
        ([_site(colour="red")], {"KEY_ATELIER_MARIE": "k"}, "unknown field(s) colour"),
        (["just-a-string"], {}, "must be a mapping"),
        ([], {}, "lists no site"),
    ],
)
def test_configuration_errors_name_the_site(tmp_path, sites, env, message):
    path = _write(tmp_path, sites)
    with pytest.raises(SiteConfigError) as err:
        load_registry({"TEMPLATE_SITES_FILE": str(path), **env})
    assert message in str(err.value)


def test_missing_sites_file(tmp_path):
    with pytest.raises(SiteConfigError, match="does not exist"):
        load_registry({"TEMPLATE_SITES_FILE": str(tmp_path / "nope.yaml")})


def test_sites_file_that_is_not_yaml(tmp_path):
    path = tmp_path / "sites.yaml"
    path.write_text("sites: [unclosed", encoding="utf-8")
    with pytest.raises(SiteConfigError, match="not valid YAML"):
        load_registry({"TEMPLATE_SITES_FILE": str(path)})


def test_sites_file_without_sites_list(tmp_path):
    path = tmp_path / "sites.yaml"
    path.write_text("site: {}\n", encoding="utf-8")
    with pytest.raises(SiteConfigError, match="'sites:' list"):
        load_registry({"TEMPLATE_SITES_FILE": str(path)})


def test_nothing_configured():
    with pytest.raises(SiteConfigError, match="no site is configured"):
        load_registry({})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TEMPLATE_BASE_URL": "https://solo.example/"},
            "TEMPLATE_API_KEY (its api_key_env) is not set",
        ),
        ({"TEMPLATE_BASE_URL": "https://solo.example/", "TEMPLATE_API_KEY": ""}, "is empty"),
        ({"TEMPLATE_BASE_URL": "https://solo.example/", "TEMPLATE_API_KEY": MASKED}, "masked"),
        ({"TEMPLATE_BASE_URL": "solo.example", "TEMPLATE_API_KEY": "k"}, "absolute"),
    ],
)
def test_single_site_errors(env, message):
    with pytest.raises(SiteConfigError, match="site 'default'") as err:
        load_registry(env)
    assert message in str(err.value)


def test_unknown_site_lists_known_ones(tmp_path):
    path = _write(tmp_path, [_site()])
    registry = load_registry({"TEMPLATE_SITES_FILE": str(path), "KEY_ATELIER_MARIE": "k"})
    with pytest.raises(SiteConfigError, match="known sites: atelier-marie"):
        registry.get("elsewhere")


@responses.activate
def test_configuration_errors_happen_before_any_http_call(tmp_path):
    # `responses` fails any request not registered: none may be attempted.
    path = _write(tmp_path, [_site(), _site("site-b")])
    with pytest.raises(SiteConfigError):
        load_registry({"TEMPLATE_SITES_FILE": str(path), "KEY_ATELIER_MARIE": "k"})
    assert len(responses.calls) == 0
