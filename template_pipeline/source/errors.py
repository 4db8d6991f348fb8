"""The typed errors of the Template export client; ``str()`` names the site and the endpoint.

Every error is built from text that has already been redacted (see ``redaction``): no error
carries the API key, and each survives pickling across Dagster's process boundaries.

``retryable`` tells the layers above whether the failure is of a kind that can heal by itself
(the network, a 5xx or 429, a body cut short): such errors have already been retried by the
client (``attempts`` says how often) within its time budget, and a later attempt may succeed.
``retryable`` False means the same request will fail the same way until someone changes the
site or the configuration (a refused key, a missing endpoint, an unusable document, a body over
the size limit, pagination that cannot be trusted, a deadline spent, a ``Retry-After`` beyond
the cap): retrying it only costs time.
"""

from __future__ import annotations

from typing import Any


class TemplateError(Exception):
    """A failed call to a site's export API; ``str()`` names the site and the endpoint."""

    # Unless said otherwise, a failure is not worth another attempt.
    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        site: str,
        endpoint: str,
        status: int | None = None,
        attempts: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.message = message
        self.site = site
        self.endpoint = endpoint
        self.status = status
        self.attempts = attempts
        self.retryable = self.default_retryable if retryable is None else bool(retryable)
        super().__init__(f"site {site!r}, endpoint {endpoint!r}: {message}")

    def __reduce__(self) -> Any:
        # Keyword-only fields: rebuilt from the message, then every attribute (subclasses'
        # own included) restored from __dict__, so the errors cross Dagster's processes whole.
        return (
            _rebuild_error,
            (type(self), self.message, self.site, self.endpoint),
            dict(self.__dict__),
        )


def _rebuild_error(cls: type[TemplateError], message: str, site: str, endpoint: str) -> Any:
    return cls(message, site=site, endpoint=endpoint)


class TemplateConnectionError(TemplateError):
    """The site could not be reached (refused, reset, DNS, timeout), after the retries."""

    default_retryable = True


class TemplateAuthenticationError(TemplateError):
    """The site refused the API key (HTTP 401/403); never retried."""


class TemplateNotFoundError(TemplateError):
    """The export endpoint does not exist at this base URL (HTTP 404); never retried."""


class TemplateResponseError(TemplateError):
    """The site answered, but not with a usable export document.

    Retryable only when built so (5xx and 429 after the client's retries, a body cut short):
    an HTML page, an unknown envelope or invalid JSON stay what they are on the next attempt.
    """


class TemplatePaginationError(TemplateResponseError):
    """Pagination cannot be trusted: offset ignored, records repeated, far more than announced."""


class TemplateTooLargeError(TemplateResponseError):
    """A response over the size limit (counted after decompression) or nested too deep."""


class TemplateDeadlineError(TemplateError):
    """A request, an endpoint or a site took longer than its deadline; never retried.

    ``scope`` is ``request``, ``endpoint`` or ``site``; ``elapsed`` the seconds spent in it and
    ``limit`` its deadline in seconds.
    """

    scope: str = ""
    elapsed: float = 0.0
    limit: float = 0.0
