"""RedisStore: the sliding-window ledger in Redis, shared by a fleet, one round trip a send.

The algorithm is MemoryStore's (see ``_memory.py``), run by one Lua script per reservation, so it is
atomic and costs one round trip (EVALSHA; the script is loaded on the first NOSCRIPT answer). The time is
Redis's own (``TIME`` inside the script), since the machines of a fleet disagree on theirs. For a key
``K`` and each window the store keeps:

- ``{prefix}:{K}:{per}/{unit}``: a sorted set of the window's entries, scored by slot time, each member
  ``"{token}:{units}"``; it expires when its last entry leaves the window;
- ``{prefix}:{K}``: a hash of the windows' unit sums (recounted from the sets if it is ever lost);
- ``{prefix}:{K}:pause``: the pause-until time, expiring with the pause.

All of a key's Redis keys share the hash tag ``{K}``, so they live on one node of a Redis Cluster.
"""

from __future__ import annotations

import math
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from sendchannel._limits import Rate
from sendchannel._registry import redact_url
from sendchannel._throttle._store import LOOK_ONLY, Costs, Reservation, window_name
from sendchannel.errors import ConfigurationError, ConnectionLostError, SendError

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisStore"]

# Lua has no infinity literal that survives the trip as an argument; this is as good.
_FOREVER = 1e300

_COMMON = """
if redis.replicate_commands then redis.replicate_commands() end
local function units_of(member)
  return tonumber(string.match(member, ':(%d+)$'))
end
local function clock()
  local time = redis.call('TIME')
  return tonumber(time[1]) + tonumber(time[2]) / 1000000
end
local function number(value)
  return string.format('%.17g', value)
end
"""

# KEYS: sums hash, pause key, one sorted set per window (its name is also its field in the sums hash).
# ARGV: max_wait, token, then for each window "per count units" in one argument (fewer to encode).
# Returns {granted (0 or 1), wait (seconds from Redis's now, as text), index of the limiting window or 0}.
_RESERVE = _COMMON + """
local now = clock()
local max_wait = tonumber(ARGV[1])
local token = ARGV[2]
local sums = KEYS[1]
local windows = #KEYS - 2
local start = now
local paused = redis.call('GET', KEYS[2])
if paused and tonumber(paused) > start then start = tonumber(paused) end

local pers, counts, costs, totals = {}, {}, {}, {}
for i = 1, windows do
  local key = KEYS[2 + i]
  local per, count, units = string.match(ARGV[2 + i], '^(%S+) (%d+) (%d+)$')
  per = tonumber(per)
  pers[i], counts[i], costs[i] = per, tonumber(count), tonumber(units)
  local expired = redis.call('ZRANGEBYSCORE', key, '-inf', number(now - per))
  if #expired > 0 then redis.call('ZREMRANGEBYRANK', key, 0, #expired - 1) end
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  local total = 0
  if #last > 0 then
    if tonumber(last[2]) > start then start = tonumber(last[2]) end
    total = tonumber(redis.call('HGET', sums, key))
    if total == nil then
      -- The sums were lost (evicted): count the window again.
      total = 0
      for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do total = total + units_of(member) end
    else
      for _, member in ipairs(expired) do total = total - units_of(member) end
    end
  end
  totals[i] = total
end

local at = start
local limited = 0
for i = 1, windows do
  local excess = totals[i] + costs[i] - counts[i]
  if excess > 0 then
    local key = KEYS[2 + i]
    local free_at = nil
    local offset = 0
    while free_at == nil do
      local batch = redis.call('ZRANGE', key, offset, offset + 31, 'WITHSCORES')
      if #batch == 0 then
        return redis.error_reply('a send of ' .. costs[i] .. ' units can never fit a window of ' .. counts[i])
      end
      for j = 1, #batch, 2 do
        excess = excess - units_of(batch[j])
        if excess <= 0 then
          free_at = tonumber(batch[j + 1]) + pers[i]
          break
        end
      end
      offset = offset + 32
    end
    if free_at > at then
      at = free_at
      limited = i
    end
  end
end

if at - now > max_wait then
  return {0, number(at - now), limited}
end
local longest = 0
local fields = {}
for i = 1, windows do
  local key = KEYS[2 + i]
  redis.call('ZADD', key, number(at), token .. ':' .. costs[i])
  fields[#fields + 1] = key
  fields[#fields + 1] = totals[i] + costs[i]
  local ttl = math.ceil((at + pers[i] - now) * 1000) + 1
  redis.call('PEXPIRE', key, ttl)
  if ttl > longest then longest = ttl end
end
if windows > 0 then
  redis.call('HSET', sums, unpack(fields))
  redis.call('PEXPIRE', sums, longest)
end
return {1, number(at - now), limited}
"""

# KEYS: sums hash, one sorted set per window. ARGV: for each window, the member to remove.
_RELEASE = _COMMON + """
for i = 2, #KEYS do
  local member = ARGV[i - 1]
  if redis.call('ZREM', KEYS[i], member) == 1 then
    local total = tonumber(redis.call('HGET', KEYS[1], KEYS[i]))
    if total ~= nil then
      redis.call('HSET', KEYS[1], KEYS[i], total - units_of(member))
    end
  end
end
return 1
"""

# KEYS: pause key. ARGV: seconds.
_PAUSE = _COMMON + """
local seconds = tonumber(ARGV[1])
local ends = clock() + seconds
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) >= ends then return 0 end
redis.call('SET', KEYS[1], number(ends), 'PX', math.ceil(seconds * 1000) + 1)
return 1
"""


class RedisStore:
    """Keeps the throttle ledgers in Redis: for a fleet of processes and machines.

    Every process that uses the same Redis (and ``prefix``) shares the budget of each key. A send costs
    one round trip, an atomic Lua script that takes its time from the Redis server, so machines whose
    clocks disagree still keep one sliding window. Keys expire when their windows do. If Redis cannot be
    reached, sends fail with ``ConnectionLostError`` and nothing is sent: never unthrottled. When Redis
    comes back on the same address, sending resumes (a pooled connection it closed is opened again).
    Nothing connects until the first use.

    Use a Redis whose eviction policy is ``noeviction`` (the default) or ``volatile-*``; the store's keys
    all carry an expiry. The counts live in Redis's memory: a Redis that restarts empty forgets the sends
    of the current windows, so the windows around the restart may take up to one window's count more.
    Keep them with persistence (``appendonly yes``, or save points, which a clean shutdown honours).

    Args:
        url_or_client: A URL (``redis://[:password@]host:6379/0``, ``rediss://...`` for TLS,
            ``unix:///path/to/redis.sock``) or a ``redis.asyncio.Redis`` client, which the store then
            uses as it is and does not close.
        prefix: The start of every key the store writes.
        timeout: Seconds to wait for Redis to connect and answer (for a URL; a client keeps its own).

    Raises:
        ConfigurationError: The URL is not a Redis URL, a blocking ``redis.Redis`` client was given, or
            ``timeout`` is not a positive number.
        ImportError: The ``redis`` package is not installed (``pip install "sendchannel[redis]"``).

    Example::

        store = RedisStore("redis://redis.internal:6379/0")
        channel = Throttler(office365_channel, store=store)
    """

    def __init__(
        self,
        url_or_client: str | redis.asyncio.Redis,
        *,
        prefix: str = "sendchannel",
        timeout: float = 5.0,
    ) -> None:
        try:
            import redis
            import redis.asyncio
            import redis.exceptions
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:
            raise ImportError(
                'RedisStore needs the redis package; install it with: pip install "sendchannel[redis]"',
                name=exc.name,
            ) from exc
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
            raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if not isinstance(prefix, str) or not prefix:
            raise ConfigurationError(f"prefix must be a non-empty string, got {prefix!r}")
        self._prefix = prefix
        given: object = url_or_client  # checked at run time too: callers are not always type-checked
        self._owns_client = isinstance(given, str)
        if isinstance(given, str):
            scheme = given.partition("://")[0].lower()
            if scheme not in ("redis", "rediss", "unix"):
                raise ConfigurationError(
                    f"RedisStore needs a redis://, rediss:// or unix:// URL, got {redact_url(given)!r}"
                )
            self._where = redact_url(given)
            try:
                client = redis.asyncio.Redis.from_url(
                    given,
                    socket_connect_timeout=timeout,
                    socket_timeout=timeout,
                    # A pooled connection that Redis closed (a restart, a failover, an idle timeout) fails
                    # its next command: run that command once more on a new connection. Connection errors
                    # only, never timeouts; a reservation run twice after a lost reply only counts the
                    # send twice, the safe side.
                    retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
                )
            except ValueError as exc:
                raise ConfigurationError(
                    f"RedisStore cannot use the URL {self._where!r}: {exc}; "
                    "write redis://host:6379/0 or unix:///path/to/redis.sock"
                ) from None
        elif isinstance(given, redis.asyncio.Redis):
            client = given
            kwargs = client.connection_pool.connection_kwargs
            self._where = str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")
        elif isinstance(given, redis.Redis):
            raise ConfigurationError(
                "RedisStore needs the asyncio client, redis.asyncio.Redis, not the blocking redis.Redis; "
                "build it with redis.asyncio.Redis.from_url(url), or pass the URL itself."
            )
        else:
            raise ConfigurationError(
                f"RedisStore takes a Redis URL or a redis.asyncio.Redis client, got {type(given).__name__}"
            )
        self._client: redis.asyncio.Redis = client
        self._reserve = client.register_script(_RESERVE)
        self._release = client.register_script(_RELEASE)
        self._pause = client.register_script(_PAUSE)
        self._redis_errors = redis.RedisError
        self._timeout_errors = (redis.TimeoutError, TimeoutError)
        self._connection_errors = (redis.ConnectionError, OSError)
        self._auth_errors = (
            redis.exceptions.AuthenticationError,
            redis.exceptions.AuthorizationError,
            redis.exceptions.NoPermissionError,
        )

    @property
    def client(self) -> redis.asyncio.Redis:
        """The redis-py asyncio client the store talks through."""
        return self._client

    # -- ThrottleStore ---------------------------------------------------------------------------------------

    async def reserve(
        self, key: str, costs: Costs, *, now: Callable[[], float], max_wait: float
    ) -> Reservation:
        """Record a send at the earliest slot where it fits every window, if within ``max_wait``.

        Raises:
            ConnectionLostError: Redis cannot be reached; nothing was recorded.
            ConfigurationError: Redis refused the store's commands (a password, ACL or a wrong key type).
        """
        token = _new_token()
        keys = [self._sums_key(key), self._pause_key(key)]
        args: list[str | float] = [min(max_wait, _FOREVER), token]
        for rate, units in costs:
            keys.append(self._window_key(key, rate))
            args.append(f"{rate.per!r} {rate.count} {units}")
        granted, wait, limited = await self._call(self._reserve(keys=keys, args=args))
        at = now() + float(wait)
        limited_by = costs[int(limited) - 1][0] if int(limited) else None
        if int(granted):
            return Reservation(granted=True, at=at, token=token, limited_by=limited_by)
        return Reservation(granted=False, at=at, limited_by=limited_by)

    async def next_permit(self, key: str, costs: Costs, *, now: Callable[[], float]) -> Reservation:
        """When a send taking ``costs`` would get its slot, in one round trip; records nothing.

        Raises:
            ConnectionLostError: Redis cannot be reached.
            ConfigurationError: Redis refused the store's commands.
        """
        # The reservation script with a negative max_wait: every slot is at or after Redis's now, so the
        # script answers the slot and records nothing.
        return await self.reserve(key, costs, now=now, max_wait=LOOK_ONLY)

    async def release(self, key: str, costs: Costs, token: str) -> None:
        """Forget a recorded send that never reached the provider."""
        keys = [self._sums_key(key)]
        args = []
        for rate, units in costs:
            keys.append(self._window_key(key, rate))
            args.append(f"{token}:{units}")
        await self._call(self._release(keys=keys, args=args))

    async def pause(self, key: str, seconds: float, *, now: Callable[[], float]) -> None:
        """Give ``key`` no slot before ``seconds`` from now (Redis's now)."""
        if not seconds > 0:
            return
        await self._call(self._pause(keys=[self._pause_key(key)], args=[repr(float(seconds))]))

    async def verify(self) -> None:
        """Reach Redis (PING), recording nothing.

        Raises:
            ConnectionLostError: Redis cannot be reached.
            ConfigurationError: Redis refused the client (a password or ACL).
        """
        await self._call(self._client.ping())

    async def aclose(self) -> None:
        """Close the connections, when the store made its own client from a URL."""
        if self._owns_client:
            await self._client.aclose()

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self._prefix!r})"

    # -- helpers -------------------------------------------------------------------------------------------

    def _sums_key(self, key: str) -> str:
        return f"{self._prefix}:{{{key}}}"

    def _pause_key(self, key: str) -> str:
        return f"{self._prefix}:{{{key}}}:pause"

    def _window_key(self, key: str, rate: Rate) -> str:
        return f"{self._prefix}:{{{key}}}:{window_name(rate)}"

    async def _call(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except SendError:
            raise
        except self._auth_errors as exc:
            raise ConfigurationError(
                f"Redis at {self._where} refused the throttle store's client ({type(exc).__name__}), so "
                "nothing was sent. Check the password or ACL user in the URL."
            ) from None
        except self._timeout_errors as exc:
            # The command may still run when Redis catches up: a permit may be counted, never used.
            raise ConnectionLostError(
                f"Redis at {self._where} did not answer the throttle store in time ({_describe(exc)}), so "
                "nothing was sent; a permit it asked for may still be counted once Redis catches up, which "
                "only leaves quota unused. Check that Redis is running and not overloaded."
            ) from exc
        except self._connection_errors as exc:
            raise ConnectionLostError(
                f"The throttle store cannot reach Redis at {self._where} ({_describe(exc)}), so no permit "
                "was taken and nothing was sent. Check that Redis is running and the URL is right."
            ) from exc
        except self._redis_errors as exc:
            raise ConfigurationError(
                f"Redis at {self._where} refused the throttle store's script ({_describe(exc)}), so nothing "
                "was sent. Check that no other program writes keys under the store's prefix."
            ) from exc


def _new_token() -> str:
    return os.urandom(8).hex()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

