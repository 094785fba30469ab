"""The one documented exception tree.

Every error imagine raises on purpose is an `ImagineError`. Each message says what went wrong *and*
how to fix it, because the CLI, the server and the studio show it to a person as one line.

    ImagineError
    ├── InputError          bad prompt, file, part or argument supplied by the caller
    │   └── LimitExceeded   media larger than a configured limit (names the setting that raises it)
    ├── OptionsError        unknown or wrong-typed engine option (names the field)
    ├── EngineNotFound      no engine / model / alias by that name (lists close matches)
    ├── EngineUnavailable   the engine exists but cannot run here (names the pip extra or env var)
    ├── UpstreamError       the engine or remote service failed while answering
    │   ├── RateLimited     429 / quota: `retry_after` seconds when the service said
    │   ├── UpstreamTimeout no answer in time
    │   └── Refused         the model or a content filter declined to answer
    ├── BudgetExceeded      the request would pass a configured cost budget
    ├── SchemaError         structured output did not validate against the requested schema
    ├── ConfigError         the config file or an IMAGINE_* variable is malformed
    └── StoreError          the log database or blob store cannot be read or written
"""

from __future__ import annotations

__all__ = [
    "BudgetExceeded",
    "ConfigError",
    "EngineNotFound",
    "EngineUnavailable",
    "ImagineError",
    "InputError",
    "LimitExceeded",
    "OptionsError",
    "RateLimited",
    "Refused",
    "SchemaError",
    "StoreError",
    "UpstreamError",
    "UpstreamTimeout",
]


class ImagineError(Exception):
    """Base of every deliberate imagine error; `str(err)` is a complete one-line message."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class InputError(ImagineError):
    """The caller gave something imagine cannot use: an empty prompt, a missing file, an unknown format."""

    exit_code = 2


class LimitExceeded(InputError):
    """Input is larger than a configured limit; the hint names the setting that raises it."""


class OptionsError(ImagineError):
    """An engine option is unknown or has the wrong type; the message names the field."""

    exit_code = 2


class EngineNotFound(ImagineError):
    """No engine, model or alias matches the reference; the message lists close matches."""

    exit_code = 2


class EngineUnavailable(ImagineError):
    """The engine is known but cannot run here (missing extra, missing key, no capable engine)."""

    exit_code = 3


class UpstreamError(ImagineError):
    """The engine or a remote service failed while producing the answer."""

    exit_code = 4


class RateLimited(UpstreamError):
    """The service is rate limiting; `retry_after` is how long it asked us to wait (seconds), if it said."""

    def __init__(self, message: str, *, hint: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class UpstreamTimeout(UpstreamError):
    """The engine did not answer within its timeout."""


class Refused(UpstreamError):
    """The model (or a content filter) declined to answer."""


class BudgetExceeded(ImagineError):
    """Running the request would pass a cost budget (`max_cost` per request or per day)."""

    exit_code = 6


class SchemaError(ImagineError):
    """The model's structured output did not validate against the requested schema."""

    exit_code = 4


class ConfigError(ImagineError):
    """The config file or an IMAGINE_* environment variable is malformed."""

    exit_code = 2


class StoreError(ImagineError):
    """The SQLite log or the blob store cannot be read or written."""

    exit_code = 5
