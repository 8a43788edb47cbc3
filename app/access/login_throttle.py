"""Failed-login throttling of the shared server: wrong passwords cannot be tried at speed.

Counters are kept per (client address, user name): ``server.login_free_failures`` wrong
passwords are free (typos); after that each further attempt for that name from that address must
wait a lockout that starts at ``server.login_lock_s`` and doubles with each wrong password, up to
``server.login_max_lock_s``; the count is forgotten ``server.login_window_s`` after the last wrong
password, and a right password clears it. While locked, a request is answered 429 with
``Retry-After`` *without* its password being checked, so that the lockout is no oracle: a right
password is refused like a wrong one until the lockout ends. Other user names from the same
address and the same name from other addresses are not affected, so an attacker cannot lock a
colleague out from elsewhere, and spreading guesses over many names gives no more guesses per real
user.

An attempt is counted *before* its password is checked (a pending attempt) and settled after;
while the pending attempts could push a pair over its free failures, further attempts wait for
them (up to :data:`PENDING_WAIT_S`), so a burst of parallel guesses gets no more than sequential
ones. Parallel requests with the *same* credentials in one process (a browser's first requests, a
team sharing an account) are one attempt (:class:`SingleFlight`), so right passwords never queue
up behind each other: at most one pending attempt per web process and password.

Where the counters live: in Redis (:class:`RedisStore`) in shared mode. Every gunicorn worker
process (and every web machine behind one proxy) must see the same counts, or an attacker would get
the free failures once per process; Redis is already a part of the shared server, its updates
are atomic across processes (``WATCH``/``MULTI``), keys expire by themselves, and a lookup costs one
loopback round trip, much less than a file lock under the cache folder that every request would
take. Should Redis be unreachable, the counters fall back to the process's memory
(:class:`MemoryStore`) and the outage is logged: throttling then holds per process rather than
not at all, and nobody is locked out by the outage.

The client address is the connecting peer's, unless ``server.trusted_proxies`` > 0 says that many
reverse proxies sit in front: then it is the ``X-Forwarded-For`` entry the outermost trusted proxy
appended (as werkzeug's ``ProxyFix``). Never set it without a proxy, or anybody could pick an
address per request. IPv6 clients are counted per /64 network (one host usually holds a whole /64).
"""
from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import logging
import threading
import time
import uuid
from typing import Callable

log = logging.getLogger("faxplainer.auth")

PENDING_TTL_S = 60.0  # a pending attempt of a process that died is dropped after this
PENDING_WAIT_S = 10.0  # longest wait for other pending attempts before answering 429
POLL_S = 0.02
REDIS_RETRY_S = 10.0  # after a Redis error, memory counters for this long, then Redis again
KEY_PREFIX = "faxplainer:login:"
WRONG, RIGHT, UNKNOWN = "wrong", "right", "unknown"  # outcomes of a password check


@dataclasses.dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int = 5  # wrong passwords before the first lockout
    lock_s: float = 1.0  # first lockout, doubled by each further wrong password
    max_lock_s: float = 900.0  # longest lockout
    window_s: float = 3600.0  # the count is forgotten this long after the last wrong password

    @classmethod
    def from_server(cls, server) -> "ThrottlePolicy":
        """The policy of a ``pipeline.config.ServerConfig``."""
        return cls(free_failures=max(1, int(server.login_free_failures)),
                   lock_s=float(server.login_lock_s), max_lock_s=float(server.login_max_lock_s),
                   window_s=float(server.login_window_s))


def lock_seconds(failures: int, policy: ThrottlePolicy) -> float:
    """How long a pair must wait after its ``failures``-th wrong password (0 while they are free)."""
    if failures < policy.free_failures:
        return 0.0
    doublings = min(failures - policy.free_failures, 64)  # 2**64 * lock_s is past any cap
    return min(policy.max_lock_s, policy.lock_s * 2.0 ** doublings)


def wait_seconds(failures: int, last_failure: float, now: float, policy: ThrottlePolicy) -> float:
    """Seconds until the pair may try again (0 = now), given its wrong passwords so far."""
    if failures <= 0:
        return 0.0
    return max(0.0, last_failure + lock_seconds(failures, policy) - now)


@dataclasses.dataclass(frozen=True)
class Admission:
    """What to do with an attempt: ``admitted`` (check the password), or wait ``wait_s``
    (``busy``: for other pending attempts of the pair to settle; else locked out)."""

    admitted: bool
    wait_s: float = 0.0
    busy: bool = False


def decide(failures: int, last_failure: float, pending: int, now: float,
           policy: ThrottlePolicy) -> Admission:
    """The rule for one attempt of a pair with ``failures`` wrong passwords and ``pending``
    attempts being checked right now."""
    wait = wait_seconds(failures, last_failure, now, policy)
    if wait > 0:
        return Admission(False, wait)
    if pending and lock_seconds(failures + pending, policy) > 0:
        return Admission(False, POLL_S, busy=True)  # they may all be wrong: wait for them
    return Admission(True)


def client_address(remote_addr: str | None, forwarded_for: str | None, trusted_proxies: int) -> str:
    """The address failures are counted for (see the module docstring)."""
    address = remote_addr or "unknown"
    if trusted_proxies > 0 and forwarded_for:
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        if len(hops) >= trusted_proxies:
            address = hops[-trusted_proxies]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return remote_addr or "unknown"  # not an address: a proxy would not have written it
    if ip.version == 6:
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def pair_key(address: str, name: str) -> str:
    """Store key of (address, name); the name is hashed (keys stay short, any name is safe)."""
    return KEY_PREFIX + address + ":" + hashlib.sha256(name.encode("utf-8", "replace")).hexdigest()[:16]


# -- stores -------------------------------------------------------------------------------------------
class MemoryStore:
    """Counters in this process's memory (tests, and the fallback when Redis is unreachable)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float, float]] = {}  # key -> (count, last, expiry)
        self._pending: dict[str, dict[str, float]] = {}  # key -> {token: expiry}

    def _state(self, key: str, now: float) -> tuple[int, float, int]:
        count, last, expiry = self._failures.get(key, (0, 0.0, 0.0))
        if expiry <= now:
            self._failures.pop(key, None)
            count, last = 0, 0.0
        pending = {t: e for t, e in self._pending.get(key, {}).items() if e > now}
        self._pending[key] = pending
        if not pending:
            self._pending.pop(key)
        return count, last, len(pending)

    def failures(self, key: str, now: float) -> tuple[int, float]:
        with self._lock:
            count, last, _ = self._state(key, now)
        return count, last

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def admit(self, key: str, token: str, now: float, policy: ThrottlePolicy) -> Admission:
        with self._lock:
            decision = decide(*self._state(key, now), now, policy)
            if decision.admitted:
                self._pending.setdefault(key, {})[token] = now + PENDING_TTL_S
        return decision

    def settle(self, key: str, token: str, outcome: str, now: float, policy: ThrottlePolicy) -> int:
        """End the pending attempt ``token``: count a wrong password, clear on a right one;
        returns the pair's count."""
        with self._lock:
            count, last, _ = self._state(key, now)
            self._pending.get(key, {}).pop(token, None)
            if outcome == RIGHT:
                self._failures.pop(key, None)
                return 0
            if outcome == WRONG:
                count, last = count + 1, now
                self._failures[key] = (count, last, now + policy.window_s)
            return count


class RedisStore:
    """Counters in Redis: ``<key>`` a hash {n: wrong passwords, t: time of the last} expiring
    ``window_s`` after the last; ``<key>:p`` a sorted set of pending attempts by expiry."""

    def __init__(self, client):
        self.r = client

    def failures(self, key: str, now: float) -> tuple[int, float]:
        count, last = self.r.hmget(key, "n", "t")
        return int(count or 0), float(last or 0)

    def clear(self, key: str) -> None:
        self.r.delete(key)

    def admit(self, key: str, token: str, now: float, policy: ThrottlePolicy) -> Admission:
        import redis

        pending_key = key + ":p"
        self.r.zremrangebyscore(pending_key, "-inf", now)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key, pending_key)  # another process's change aborts the MULTI below
                    count, last = pipe.hmget(key, "n", "t")
                    pending = pipe.zcount(pending_key, now, "+inf")
                    decision = decide(int(count or 0), float(last or 0), int(pending), now, policy)
                    if not decision.admitted:
                        pipe.unwatch()
                        return decision
                    pipe.multi()
                    pipe.zadd(pending_key, {token: now + PENDING_TTL_S})
                    pipe.pexpire(pending_key, int(PENDING_TTL_S * 1000))
                    pipe.execute()
                    return decision
                except redis.WatchError:
                    continue  # changed meanwhile: decide again on the new counts

    def settle(self, key: str, token: str, outcome: str, now: float, policy: ThrottlePolicy) -> int:
        with self.r.pipeline() as pipe:  # MULTI/EXEC: atomic
            pipe.zrem(key + ":p", token)
            if outcome != WRONG:
                if outcome == RIGHT:
                    pipe.delete(key)
                pipe.hget(key, "n")
                return int(pipe.execute()[-1] or 0)
            pipe.hincrby(key, "n", 1)
            pipe.hset(key, "t", repr(now))
            pipe.pexpire(key, int(policy.window_s * 1000))
            return int(pipe.execute()[1])


class FallbackStore:
    """:class:`RedisStore`, or :class:`MemoryStore` for :data:`REDIS_RETRY_S` after a Redis error."""

    def __init__(self, primary: RedisStore, fallback: MemoryStore | None = None):
        self.primary, self.fallback = primary, fallback or MemoryStore()
        self._down_until = 0.0

    def _call(self, method: str, *args):
        if time.monotonic() >= self._down_until:
            try:
                return getattr(self.primary, method)(*args)
            except Exception as e:  # redis.RedisError, OSError: Redis down or unreachable
                self._down_until = time.monotonic() + REDIS_RETRY_S
                log.error("login throttle: Redis unreachable (%s: %s); counting failed logins in "
                          "this process's memory for %.0f s", type(e).__name__, e, REDIS_RETRY_S)
        return getattr(self.fallback, method)(*args)

    def failures(self, *args):
        return self._call("failures", *args)

    def clear(self, *args):
        return self._call("clear", *args)

    def admit(self, *args):
        return self._call("admit", *args)

    def settle(self, *args):
        return self._call("settle", *args)


def redis_store(url: str) -> FallbackStore:
    """The counters of the shared server, in the Redis at ``url`` (with the memory fallback)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return FallbackStore(RedisStore(client))


class SingleFlight:
    """Concurrent calls with the same key run once; the others wait and share its result (or its
    exception). In-process only (threads of one web process)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._flights: dict[object, "_Flight"] = {}

    def run(self, key, fn: Callable):
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.result
        try:
            flight.result = fn()
            return flight.result
        except BaseException as e:
            flight.error = e
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()


class _Flight:
    def __init__(self):
        self.done = threading.Event()
        self.result = None
        self.error: BaseException | None = None


# -- the throttle --------------------------------------------------------------------------------------
class LoginLocked(Exception):
    """Too many wrong passwords for this name from this address: try again in ``wait_s``."""

    def __init__(self, address: str, name: str, wait_s: float):
        super().__init__(f"too many wrong passwords for {name!r} from {address}; try again in "
                         f"{wait_s:.1f} s")
        self.address, self.name, self.wait_s = address, name, wait_s


class LoginThrottle:
    """Counts wrong passwords per (address, name) in ``store`` and refuses locked-out pairs.

    Parameters
    ----------
    policy : the free failures, lockouts and window.
    store : :class:`MemoryStore`, :class:`RedisStore` or :class:`FallbackStore`.
    clock : wall-clock seconds (shared by the processes: failures are stamped with it).
    """

    def __init__(self, policy: ThrottlePolicy, store, clock: Callable[[], float] = time.time):
        self.policy, self.store, self.clock = policy, store, clock

    def login(self, address: str, name: str, accepted: Callable[[], bool],
              check: Callable[[], str]) -> bool:
        """Whether ``name`` logs in from ``address``.

        First the lockout (one store read), then ``accepted()`` (this process accepted these
        credentials a moment ago: no hash check), else the password ``check`` as a counted
        :meth:`attempt`. A right password clears the pair's count.

        Raises
        ------
        LoginLocked
            The pair is locked out; nothing else was looked at.
        """
        key = pair_key(address, name)
        now = self.clock()
        count, last = self.store.failures(key, now)
        wait = wait_seconds(count, last, now, self.policy)
        if wait > 0:  # before the memory of accepted credentials: no oracle while locked
            raise LoginLocked(address, name, wait)
        if accepted():
            if count:
                self.store.clear(key)
            return True
        return self.attempt(address, name, check)

    def attempt(self, address: str, name: str, check: Callable[[], str]) -> bool:
        """Run the password ``check`` (returns :data:`RIGHT`, :data:`WRONG` or :data:`UNKNOWN`,
        the latter when no answer could be had, e.g. an unreadable users file) as a counted
        attempt; returns whether it was right.

        Raises
        ------
        LoginLocked
            The pair is locked out (the password is not checked), or other attempts of the pair
            stayed pending for :data:`PENDING_WAIT_S`.
        """
        key, token = pair_key(address, name), uuid.uuid4().hex
        deadline = time.monotonic() + PENDING_WAIT_S
        while True:
            decision = self.store.admit(key, token, self.clock(), self.policy)
            if decision.admitted:
                break
            if not decision.busy:
                raise LoginLocked(address, name, decision.wait_s)
            if time.monotonic() >= deadline:
                log.warning("login of user %r from %s refused: other attempts of it stayed pending "
                            "for %.0f s", name[:64], address, PENDING_WAIT_S)
                raise LoginLocked(address, name, 1.0)
            time.sleep(POLL_S)
        outcome = UNKNOWN
        try:
            outcome = check()
        finally:  # an unknown outcome (or an error) is no guess: neither counted nor clearing
            count = self.store.settle(key, token, outcome, self.clock(), self.policy)
        if outcome == WRONG:
            lock = lock_seconds(count, self.policy)
            log.warning("failed login for user %r from %s (%d wrong password(s) in a row)%s",
                        name[:64], address, count,
                        f"; locked out for {lock:g} s" if lock else "")
        return outcome == RIGHT
