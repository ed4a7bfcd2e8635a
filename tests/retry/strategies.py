"""Hypothesis strategies for the retry, failover and bulk tests: policies and scripted faults."""

from __future__ import annotations

import attrs
from hypothesis import strategies as st

from sendchannel import (
    AuthenticationError,
    ConnectionLostError,
    DeliveryUnknownError,
    MessageRejectedError,
    PermanentError,
    QuotaExceededError,
    RecipientsRefusedError,
    RetryPolicy,
    SendError,
    ThrottledError,
    TransientError,
)

ERROR_CLASSES: tuple[type[SendError], ...] = (
    TransientError,
    ThrottledError,
    ConnectionLostError,
    PermanentError,
    AuthenticationError,
    RecipientsRefusedError,
    MessageRejectedError,
    QuotaExceededError,
    DeliveryUnknownError,
)
#: Transient classes drawn more often, so that long retry sequences happen.
_WEIGHTED = st.one_of(
    st.sampled_from([TransientError, ThrottledError, ConnectionLostError]),
    st.sampled_from(ERROR_CLASSES),
)


@attrs.frozen
class Fault:
    """One scripted failure: the error a send raises, and whether the message went out regardless."""

    error: SendError
    delivered: bool = False


@st.composite
def faults(draw: st.DrawFn) -> Fault:
    error_class = draw(_WEIGHTED)
    retry_after = draw(st.none() | st.floats(0.0, 120.0, allow_nan=False))
    error = error_class(f"scripted {error_class.__name__}", code=421, retry_after=retry_after)
    delivered = error_class is DeliveryUnknownError and draw(st.booleans())
    return Fault(error, delivered)


fault_sequences = st.lists(faults(), max_size=8)

policies = st.builds(
    RetryPolicy,
    attempts=st.integers(1, 6),
    initial=st.floats(0.0, 10.0),
    maximum=st.floats(0.0, 60.0),
    multiplier=st.floats(1.0, 4.0),
    jitter=st.booleans(),
    max_elapsed=st.none() | st.floats(1.0, 400.0),
    retry_ambiguous=st.booleans(),
)
