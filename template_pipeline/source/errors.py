"""The typed errors of the Template export client; ``str()`` names the site and the endpoint.

Every error is built from text that has already been redacted (see ``transport``): no error
carries the API key, and each survives pickling across Dagster's process boundaries.
"""

from __future__ import annotations


class TemplateError(Exception):
    """A failed call to a site's export API; ``str()`` names the site and the endpoint."""

    def __init__(
        self,
        message: str,
        *,
        site: str,
        endpoint: str,
        status: int | None = None,
        attempts: int | None = None,
    ) -> None:
        self.message = message
        self.site = site
        self.endpoint = endpoint
        self.status = status
        self.attempts = attempts
        super().__init__(f"site {site!r}, endpoint {endpoint!r}: {message}")

    def __reduce__(self):  # keyword-only fields: keep the errors picklable across processes
        return (
            _rebuild_error,
            (type(self), self.message, self.site, self.endpoint, self.status, self.attempts),
        )


def _rebuild_error(cls, message, site, endpoint, status, attempts):
    return cls(message, site=site, endpoint=endpoint, status=status, attempts=attempts)


class TemplateConnectionError(TemplateError):
    """The site could not be reached (refused, reset, DNS, timeout), after the retries."""


class TemplateAuthenticationError(TemplateError):
    """The site refused the API key (HTTP 401/403); never retried."""


class TemplateNotFoundError(TemplateError):
    """The export endpoint does not exist at this base URL (HTTP 404); never retried."""


class TemplateResponseError(TemplateError):
    """The site answered, but not with a usable export document."""


class TemplatePaginationError(TemplateResponseError):
    """Pagination cannot be trusted: the server ignores ``offset``, or the page cap was hit."""
