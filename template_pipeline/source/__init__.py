"""The source layer: the Template export API client, its pages, retries, envelopes and probe."""

from template_pipeline.source.client import (
    PROBE_SETTINGS,
    SENSOR_SETTINGS,
    SYNC_SETTINGS,
    ClientSettings,
    TemplateClient,
    client_for,
)
from template_pipeline.source.errors import (
    TemplateAuthenticationError,
    TemplateConnectionError,
    TemplateError,
    TemplateNotFoundError,
    TemplatePaginationError,
    TemplateResponseError,
)

__all__ = [
    "PROBE_SETTINGS",
    "SENSOR_SETTINGS",
    "SYNC_SETTINGS",
    "ClientSettings",
    "TemplateAuthenticationError",
    "TemplateClient",
    "TemplateConnectionError",
    "TemplateError",
    "TemplateNotFoundError",
    "TemplatePaginationError",
    "TemplateResponseError",
    "client_for",
]
