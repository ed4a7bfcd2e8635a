"""Plot a simulated hour of Office 365 traffic: the Throttler's sliding window beside a token bucket.

    python bench/plot_throttle.py            # writes docs/_static/throttle.png

Both run on a VirtualClock against the same bursty demand (batches of mail every few minutes and a
trickle in between) under Office 365's 30 messages a minute. The token bucket holds 30 tokens and
refills one every 2 s: the usual way to write "30 a minute", and the one the sliding window replaces.
After a quiet spell its bucket is full, so a burst gets 30 at once *and* the 30 that drip in over the next
minute: up to twice the limit in one rolling minute, which Office 365 answers with 432 4.3.2 or worse.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from sendchannel import Limits, Message, Rate, SendResult, Throttler
from sendchannel.testing import FakeChannel, VirtualClock

OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "_static" / "throttle.png"
LIMIT = Rate.per_minute(30)
HOUR = 3600.0
#: (minute, messages) of each batch; a trickle of single messages arrives in between.
BATCHES = [(2, 70), (14, 45), (23, 100), (41, 60), (52, 35)]


class TokenBucket:
    """A token bucket for comparison: ``capacity`` tokens, one more every ``per / capacity`` seconds."""

    def __init__(self, channel: FakeChannel, clock: VirtualClock, capacity: int, per: float) -> None:
        self.channel = channel
        self.clock = clock
        self.capacity = capacity
        self.interval = per / capacity
        self.tokens = float(capacity)
        self.updated = clock.now()
        self.next_free = clock.now()  # FIFO: each waiter takes the next token in turn

    async def send(self, message: Message) -> SendResult:
        now = self.clock.now()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) / self.interval)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
        else:
            # Take the next token to come, after those already promised to earlier waiters.
            self.next_free = max(self.next_free, now + (1 - self.tokens) * self.interval)
            wait_until = self.next_free
            self.next_free += self.interval
            self.tokens -= 1
            await self.clock.sleep(wait_until - now)
        return await self.channel.send(message)


def demand(chooser: random.Random) -> list[float]:
    """When each message is handed to the sender, in seconds from the start."""
    arrivals = [minute * 60.0 + index * 0.05 for minute, size in BATCHES for index in range(size)]
    moment = 0.0
    while True:
        moment += chooser.expovariate(1 / 25)
        if moment >= HOUR:
            break
        arrivals.append(moment)
    return sorted(arrivals)


async def simulate(make_sender: Callable[[FakeChannel, VirtualClock], Callable[[Message], Awaitable[object]]],
                   arrivals: list[float]) -> list[float]:
    """The times at which the channel received each message."""
    clock = VirtualClock()
    channel = FakeChannel(limits=Limits(rates=(LIMIT,)), clock=clock)
    send = make_sender(channel, clock)
    sent: list[float] = []
    mail = Message("alice@contoso.com", ["bob@example.com"], subject="report", text="...")

    async def one(at: float) -> None:
        await clock.sleep(at)
        await send(mail)
        sent.append(clock.now())

    await asyncio.gather(*(one(at) for at in arrivals))
    return sorted(sent)


def rolling(sent: list[float], per: float, step: float = 1.0) -> tuple[list[float], list[int]]:
    """For each moment t, the sends in the window (t - per, t]."""
    times, counts = [], []
    start = 0
    end = 0
    moment = 0.0
    while moment <= HOUR + per:
        while end < len(sent) and sent[end] <= moment:
            end += 1
        while start < end and sent[start] + per <= moment:
            start += 1
        times.append(moment / 60)
        counts.append(end - start)
        moment += step
    return times, counts


def per_minute(sent: list[float]) -> list[int]:
    minutes = [0] * (math.ceil(HOUR / 60) + 10)
    for at in sent:
        minutes[int(at // 60)] += 1
    return minutes


def busiest_window(sent: list[float], per: float) -> int:
    best = 0
    start = 0
    for end, at in enumerate(sent):
        while sent[start] + per <= at:
            start += 1
        best = max(best, end - start + 1)
    return best


def main() -> None:
    arrivals = demand(random.Random(2026))
    throttled = asyncio.run(
        simulate(lambda channel, clock: Throttler(channel, clock=clock, max_wait=math.inf).send, arrivals)
    )
    bucket = asyncio.run(
        simulate(lambda channel, clock: TokenBucket(channel, clock, LIMIT.count, LIMIT.per).send, arrivals)
    )

    figure, (bars, lines) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, height_ratios=(1, 1.2))
    minutes = list(range(len(per_minute(throttled))))
    width = 0.42
    bars.bar(
        [m + 0.5 - width / 2 for m in minutes], per_minute(throttled), width,
        label="Throttler (sliding window)", color="#2a6f97",
    )
    bars.bar([m + 0.5 + width / 2 for m in minutes], per_minute(bucket), width, label="token bucket",
             color="#e07a5f", alpha=0.85)
    bars.axhline(LIMIT.count, color="black", linewidth=1, linestyle="--")
    bars.set_ylabel("sends in each\nclock minute")
    bars.legend(loc="upper right", fontsize=9)
    bars.set_title("A simulated hour of Office 365 mail (30 messages a minute), bursty demand")

    for sent, label, colour in ((bucket, "token bucket", "#e07a5f"), (throttled, "Throttler (sliding window)",
                                                                      "#2a6f97")):
        times, counts = rolling(sent, LIMIT.per)
        lines.plot(times, counts, label=f"{label}: at most {busiest_window(sent, LIMIT.per)}", color=colour,
                   linewidth=1.6)
    lines.axhline(LIMIT.count, color="black", linewidth=1, linestyle="--", label="Office 365 limit: 30")
    lines.set_ylabel("sends in the\nlast 60 seconds")
    lines.set_xlabel("minutes")
    lines.set_xlim(0, 62)
    lines.legend(loc="upper right", fontsize=9)
    figure.tight_layout()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(OUTPUT, dpi=110)
    print(f"wrote {OUTPUT}")
    print(
        f"messages: {len(arrivals)}; busiest rolling minute: throttler "
        f"{busiest_window(throttled, LIMIT.per)}, token bucket {busiest_window(bucket, LIMIT.per)} "
        f"(limit {LIMIT.count})"
    )
    print(f"last send: throttler {throttled[-1] / 60:.1f} min, token bucket {bucket[-1] / 60:.1f} min")


if __name__ == "__main__":
    main()
