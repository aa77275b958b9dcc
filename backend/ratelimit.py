"""Token buckets, in memory, keyed by a string (an account, an address, a user id).

A bucket holds up to ``capacity`` tokens and gains ``per_s`` tokens a second; each request
takes one. ``take`` answers 0 when it took one, else the seconds until one is there (the
``Retry-After``). Buckets that have filled up again are forgotten, and at most ``max_keys``
are kept (the least recently used go first), so a flood of distinct keys costs bounded
memory. One backend process, one set of buckets: behind several backends each limits alone.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from backend.errors import TooManyRequests

__all__ = ["ConcurrencyLimit", "RateLimits", "TokenBuckets", "retry_after"]


class TokenBuckets:
    def __init__(
        self,
        capacity: float,
        per_s: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity > 0 and per_s <= 0:
            raise ValueError("a limited bucket must refill (per_s > 0)")
        self.capacity, self.per_s, self.max_keys, self.clock = capacity, per_s, max_keys, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at), LRU order

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def take(self, key: str) -> float:
        """0.0 when a token was taken; otherwise how many seconds until one is there."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        tokens, at = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - at) * self.per_s)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.per_s
        if len(self._buckets) > self.max_keys:
            self._shrink(now)
        return wait

    def _shrink(self, now: float) -> None:
        full = [
            k
            for k, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * self.per_s >= self.capacity
        ]
        for k in full:
            del self._buckets[k]
        while len(self._buckets) > self.max_keys:
            del self._buckets[next(iter(self._buckets))]

    def __len__(self) -> int:
        return len(self._buckets)


class ConcurrencyLimit:
    """At most ``per_key`` holders at once per key (a user's database connections). One more
    waits up to ``wait_s`` for a holder of the same key to finish, then TooManyRequests with
    a Retry-After. Keys nobody holds or waits for are forgotten."""

    def __init__(self, per_key: int, wait_s: float, what: str) -> None:
        if per_key < 1:
            raise ValueError("per_key must be at least 1")
        self.per_key, self.wait_s, self.what = per_key, wait_s, what
        self._keys: dict[str, tuple[asyncio.Semaphore, int]] = {}  # key -> (slots, users)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        slots, users = self._keys.get(key) or (asyncio.Semaphore(self.per_key), 0)
        self._keys[key] = (slots, users + 1)
        try:
            try:
                await asyncio.wait_for(slots.acquire(), self.wait_s)
            except TimeoutError:
                seconds = retry_after(self.wait_s)
                raise TooManyRequests(
                    f"{self.per_key} {self.what} of this user are already running; retry in "
                    f"{seconds} s, or send fewer at once",
                    seconds,
                ) from None
            try:
                yield
            finally:
                slots.release()
        finally:
            slots, users = self._keys[key]
            if users == 1:
                del self._keys[key]
            else:
                self._keys[key] = (slots, users - 1)

    def __len__(self) -> int:
        return len(self._keys)


def retry_after(wait_s: float) -> int:
    """The Retry-After header value: whole seconds, at least 1."""
    return max(1, math.ceil(wait_s))


@dataclass(frozen=True)
class RateLimits:
    login_account: TokenBuckets
    login_address: TokenBuckets
    api_user: TokenBuckets

    @classmethod
    def from_settings(
        cls, per_account: int, per_address: int, window_s: float, api_per_s: float, api_burst: int
    ) -> RateLimits:
        if window_s <= 0:
            raise ValueError("login_window_s must be positive")
        return cls(
            TokenBuckets(per_account, per_account / window_s),
            TokenBuckets(per_address, per_address / window_s),
            TokenBuckets(api_burst if api_per_s > 0 else 0, api_per_s),
        )
