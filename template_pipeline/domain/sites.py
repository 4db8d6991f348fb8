"""The site registry: which Template sites exist, where they are, which variable holds each key.

Sites come from the YAML file named by ``TEMPLATE_SITES_FILE``::

    sites:
      - key: atelier-marie            # partition key: a slug
        base_url: https://marie.example/
        api_key_env: TEMPLATE_KEY_ATELIER_MARIE
        name: Atelier Marie          # optional

or, with no sites file, from ``TEMPLATE_BASE_URL`` + ``TEMPLATE_API_KEY`` (one site, the
single-site setup of the original Dashboard guide). API keys are read from the environment here
and nowhere else, at run time, so the definitions load without any secret. The sites'
partitions are defined in :mod:`template_pipeline.defs.partitions`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from template_pipeline.domain import config
from template_pipeline.domain.vocabulary import MASKED

SITES_FILE_ENV = config.SITES_FILE.name
BASE_URL_ENV = config.BASE_URL.name
API_KEY_ENV = config.API_KEY.name
DEFAULT_SITE_KEY = config.SITE_KEY.default
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SiteConfigError(ValueError):
    """The site registry is unusable; the message names the site and what to fix."""


@dataclass(frozen=True)
class Site:
    """One Template site. ``api_key`` is excluded from ``repr`` so it never reaches a log."""

    key: str
    base_url: str
    api_key_env: str
    name: str
    api_key: str = field(repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.key} ({self.base_url})"


@dataclass(frozen=True)
class SiteRegistry:
    sites: tuple[Site, ...]
    source: str  # where the sites came from, for messages

    def __iter__(self) -> Iterator[Site]:
        return iter(self.sites)

    def __len__(self) -> int:
        return len(self.sites)

    def keys(self) -> list[str]:
        return [site.key for site in self.sites]

    def get(self, key: str) -> Site:
        for site in self.sites:
            if site.key == key:
                return site
        raise SiteConfigError(
            f"site {key!r} is not in the site registry ({self.source}); "
            f"known sites: {', '.join(self.keys()) or 'none'}"
        )


def _normalise_base_url(site_label: str, raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise SiteConfigError(f"site {site_label}: base_url is missing")
    url = raw.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SiteConfigError(
            f"site {site_label}: base_url {url!r} must be an absolute http(s) URL"
        )
    if parts.query or parts.fragment:
        raise SiteConfigError(f"site {site_label}: base_url must not carry a query or fragment")
    # A trailing slash makes the path prefix (``/t/site-b/``) survive URL joining.
    return url if url.endswith("/") else url + "/"


def _read_api_key(site_label: str, env_name: str, environ: Mapping[str, str]) -> str:
    if env_name not in environ:
        raise SiteConfigError(
            f"site {site_label}: environment variable {env_name} (its api_key_env) is not set"
        )
    value = environ[env_name].strip()
    if not value:
        raise SiteConfigError(f"site {site_label}: environment variable {env_name} is empty")
    if value == MASKED:
        raise SiteConfigError(
            f"site {site_label}: environment variable {env_name} holds the masked placeholder "
            f"{MASKED}, not a real API key (it was copied from a settings export)"
        )
    return value


def _site_from_entry(index: int, entry: object, environ: Mapping[str, str]) -> Site:
    if not isinstance(entry, Mapping):
        raise SiteConfigError(f"site #{index + 1}: each entry of 'sites' must be a mapping")
    unknown = set(entry) - {"key", "base_url", "api_key_env", "name"}
    key = entry.get("key")
    label = repr(key) if isinstance(key, str) and key else f"#{index + 1}"
    if unknown:
        raise SiteConfigError(
            f"site {label}: unknown field(s) {', '.join(sorted(map(str, unknown)))}"
        )
    if not isinstance(key, str) or not SLUG_RE.match(key):
        raise SiteConfigError(
            f"site {label}: key must be a slug (lowercase letters, digits and '-', "
            f"at most 63 characters), got {key!r}"
        )
    env_name = entry.get("api_key_env")
    if not isinstance(env_name, str) or not ENV_NAME_RE.match(env_name):
        raise SiteConfigError(
            f"site {label}: api_key_env must name an environment variable, got {env_name!r}"
        )
    name = entry.get("name") or key
    if not isinstance(name, str):
        raise SiteConfigError(f"site {label}: name must be text")
    return Site(
        key=key,
        base_url=_normalise_base_url(label, entry.get("base_url")),
        api_key_env=env_name,
        name=name,
        api_key=_read_api_key(label, env_name, environ),
    )


def load_sites_file(path: str | Path, environ: Mapping[str, str] | None = None) -> SiteRegistry:
    environ = os.environ if environ is None else environ
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SiteConfigError(f"sites file {path} ({SITES_FILE_ENV}) does not exist") from None
    except yaml.YAMLError as exc:
        raise SiteConfigError(f"sites file {path} is not valid YAML: {exc}") from None
    if not isinstance(document, Mapping) or not isinstance(document.get("sites"), list):
        raise SiteConfigError(f"sites file {path} must hold a 'sites:' list")
    sites = [_site_from_entry(i, entry, environ) for i, entry in enumerate(document["sites"])]
    if not sites:
        raise SiteConfigError(f"sites file {path} lists no site")
    seen: set[str] = set()
    for site in sites:
        if site.key in seen:
            raise SiteConfigError(f"site {site.key!r} is listed twice in {path}")
        seen.add(site.key)
    return SiteRegistry(sites=tuple(sites), source=str(path))


def load_registry(environ: Mapping[str, str] | None = None) -> SiteRegistry:
    """The configured sites, validated, with their API keys read from the environment.

    Every configuration error is raised here, before any HTTP call.
    """
    environ = os.environ if environ is None else environ
    sites_file = config.SITES_FILE.get(environ)
    if sites_file:
        return load_sites_file(sites_file, environ)
    if not config.BASE_URL.get(environ):
        raise SiteConfigError(
            f"no site is configured: set {SITES_FILE_ENV} to a sites file, or "
            f"{BASE_URL_ENV} and {API_KEY_ENV} for a single site"
        )
    key = config.SITE_KEY.get(environ) or DEFAULT_SITE_KEY
    entry = {"key": key, "base_url": environ[BASE_URL_ENV], "api_key_env": API_KEY_ENV}
    site = _site_from_entry(0, entry, environ)
    return SiteRegistry(sites=(site,), source=f"{BASE_URL_ENV}/{API_KEY_ENV}")


def write_sites_file(path: str | Path, sites: list[dict]) -> Path:
    """Write a sites file (used by the demo and the tests); entries as in the YAML format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"sites": sites}, sort_keys=False), encoding="utf-8")
    return path
