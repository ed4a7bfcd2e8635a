"""Hypothesis strategies for the throttle tests: limits and arrival patterns."""

from __future__ import annotations

from hypothesis import strategies as st

from sendchannel import Rate

rates = st.builds(
    Rate,
    count=st.integers(1, 12),
    per=st.sampled_from([1.0, 2.5, 7.0, 10.0, 60.0]),
    unit=st.sampled_from(["messages", "recipients"]),
)

#: One to three rates, no two with the same window (a Throttler keeps the stricter of those anyway).
rate_sets = st.lists(rates, min_size=1, max_size=3, unique_by=lambda rate: (rate.per, rate.unit))

#: When each send asks, in seconds from the start, and to how many recipients.
arrivals = st.lists(
    st.tuples(st.floats(0, 120, allow_nan=False), st.integers(1, 6)), min_size=1, max_size=40
)
