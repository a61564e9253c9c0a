"""
Errors raised by the Slipstream provider.

Every error is a :class:`SlipstreamError` (an ``AirflowException``). Errors that no retry can fix
(bad input, a rejected key, an unknown or expired job) are also ``AirflowFailException``, so
Airflow fails the task at once instead of burning its retries.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException


class SlipstreamError(AirflowException):
    """Base class of every error this provider raises."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        """:param status_code: the HTTP status Slipstream answered with, when there was one."""
        super().__init__(message)
        self.http_status = status_code


class SlipstreamValidationError(SlipstreamError, AirflowFailException, ValueError):
    """The input was rejected, locally before any request or by the API with a 400."""


class SlipstreamAuthError(SlipstreamError, AirflowFailException):
    """The partner API key is missing, wrong or revoked (401/403)."""


class SlipstreamJobNotFoundError(SlipstreamError, AirflowFailException):
    """The job does not exist or its result expired (404); the video must be submitted again."""


class SlipstreamTrackNotFoundError(SlipstreamError, AirflowFailException):
    """The catalog has no track with this id (404)."""


class SlipstreamApiError(SlipstreamError):
    """Any other error answer from the API, or a response that does not match the documented shape."""


class SlipstreamTransientError(SlipstreamApiError):
    """A temporary failure (429, 5xx, timeout, dropped connection) that outlasted the retry budget."""


class SlipstreamSubmitUncertainError(SlipstreamApiError, AirflowFailException):
    """
    A submit request failed after it may have reached the server.

    The API has no idempotency key, so neither the hook nor Airflow's task retries re-send it:
    a second POST could create a second job. Clear the task to submit again.
    """


class SlipstreamLicenseQuotaError(SlipstreamApiError, AirflowFailException):
    """
    The partner's daily or monthly license quota is used up: blocked until the window resets.

    An ``AirflowFailException``: retrying within minutes spends nothing but requests.
    """


class SlipstreamStorageError(SlipstreamError):
    """
    Reading the video from its storage failed for a reason other than a missing file or a directory.

    Usually temporary (s3fs reports S3 throttling and 5xx as ``OSError``), so not an
    ``AirflowFailException``: the task's retries read the video again.
    """


class SlipstreamJobTimeoutError(SlipstreamError):
    """Waiting for a job took longer than the allowed timeout."""


class SlipstreamJobNotCompletedError(SlipstreamError):
    """A result was asked for before the job completed."""


class SlipstreamBatchFailedError(SlipstreamError):
    """
    More videos of a batch failed than its ``max_failed`` allows; their error lines are in the results file.

    Not an ``AirflowFailException``: a retry submits again the videos whose failure was temporary.
    """
