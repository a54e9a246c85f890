"""The DeliveryError tree: how a channel reports a send that did not succeed.

```
KairanError
└── DeliveryError
    ├── TransientDeliveryError(retry_after)   try again later (4xx, timeout, refused)
    └── PermanentDeliveryError                never retry this message (5xx, 410)
        └── RecipientRejected                 5xx for the recipient: a hard bounce
```
"""

from __future__ import annotations

from aggregator.errors import KairanError


class DeliveryError(KairanError):
    """A message could not be delivered."""


class TransientDeliveryError(DeliveryError):
    """Retry later; ``retry_after`` (seconds) when the other side said how long."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(problem)


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help: the recipient or endpoint refused for good."""


class RecipientRejected(PermanentDeliveryError):
    """The server refused this recipient with a 5xx: a hard bounce."""


class EndpointGone(PermanentDeliveryError):
    """410 Gone: the receiver says the endpoint is gone for good (RFC 9110 §15.5.11)."""
