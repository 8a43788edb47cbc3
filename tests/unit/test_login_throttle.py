"""Failed-login throttling rules (app.access.login_throttle) on the in-memory store with a fake clock:
the lockout arithmetic, what is counted, the lockout holding for a right password, parallel
bursts, and which address is counted. (Redis across processes: tests/shared/test_access.py.)"""
from __future__ import annotations

import threading

import pytest

from app.access.login_throttle import (RIGHT, UNKNOWN, WRONG, LoginLocked, LoginThrottle, MemoryStore,
                                ThrottlePolicy, client_address, decide, lock_seconds, pair_key,
                                wait_seconds)

POLICY = ThrottlePolicy(free_failures=5, lock_s=1.0, max_lock_s=900.0, window_s=3600.0)


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_lockouts_start_after_the_free_failures_and_double_up_to_the_cap():
    assert [lock_seconds(n, POLICY) for n in range(5)] == [0.0] * 5
    assert [lock_seconds(n, POLICY) for n in range(5, 16)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900]
    assert lock_seconds(10_000, POLICY) == 900.0  # no overflow
    assert wait_seconds(6, last_failure=100.0, now=101.5, policy=POLICY) == pytest.approx(0.5)
    assert wait_seconds(6, last_failure=100.0, now=102.0, policy=POLICY) == 0.0
    assert wait_seconds(0, last_failure=0.0, now=5.0, policy=POLICY) == 0.0


def test_pending_attempts_count_as_possible_failures():
    assert decide(0, 0.0, 4, now=10.0, policy=POLICY).admitted  # 4 + this one: still free
    busy = decide(0, 0.0, 5, now=10.0, policy=POLICY)
    assert not busy.admitted and busy.busy  # they might all be wrong: wait for them
    assert decide(5, 10.0, 0, now=11.0, policy=POLICY).admitted  # lockout over, none pending
    locked = decide(5, 10.0, 0, now=10.5, policy=POLICY)
    assert not locked.admitted and not locked.busy and locked.wait_s == pytest.approx(0.5)


def _throttle(clock):
    return LoginThrottle(POLICY, MemoryStore(), clock=clock)


def test_wrong_passwords_lock_the_pair_and_the_lockout_holds_for_the_right_one():
    clock = Clock()
    throttle = _throttle(clock)
    checks = []

    def login(password, address="192.0.2.1", name="ann"):
        def check():
            checks.append(password)
            return RIGHT if password == "right" else WRONG
        return throttle.login(address, name, accepted=lambda: password == "cached-right", check=check)

    assert [login("wrong") for _ in range(5)] == [False] * 5
    with pytest.raises(LoginLocked) as locked:
        login("right")
    assert locked.value.wait_s == pytest.approx(1.0)
    with pytest.raises(LoginLocked):
        login("cached-right")  # not even this process's memory of accepted credentials
    assert len(checks) == 5  # nothing was checked while locked
    assert login("right", name="mia") and login("right", address="192.0.2.2")  # other pairs free
    clock.t += 1.0
    assert login("wrong") is False  # sixth: now 2 s
    clock.t += 1.9
    with pytest.raises(LoginLocked) as locked:
        login("wrong")
    assert locked.value.wait_s == pytest.approx(0.1)
    clock.t += 0.1
    assert login("right")  # a right password clears the count
    assert [login("wrong") for _ in range(5)] == [False] * 5
    with pytest.raises(LoginLocked):
        login("wrong")


def test_the_count_is_forgotten_after_the_window_and_unknown_outcomes_do_not_count():
    clock = Clock()
    throttle = _throttle(clock)
    for _ in range(4):
        throttle.attempt("192.0.2.1", "ann", lambda: WRONG)
    for _ in range(10):  # e.g. an unreadable users file: no guess of the user's
        assert throttle.attempt("192.0.2.1", "ann", lambda: UNKNOWN) is False
    assert throttle.store.failures(pair_key("192.0.2.1", "ann"), clock())[0] == 4
    clock.t += POLICY.window_s + 1
    assert throttle.store.failures(pair_key("192.0.2.1", "ann"), clock())[0] == 0
    with pytest.raises(RuntimeError):  # a failing check is settled (not left pending), not counted
        throttle.attempt("192.0.2.1", "ann", lambda: (_ for _ in ()).throw(RuntimeError("x")))
    assert throttle.store.failures(pair_key("192.0.2.1", "ann"), clock())[0] == 0
    assert throttle.store.admit(pair_key("192.0.2.1", "ann"), "t", clock(), POLICY).admitted


def test_a_parallel_burst_gets_no_more_guesses_than_the_free_ones():
    policy = ThrottlePolicy(free_failures=5, lock_s=60.0, max_lock_s=60.0, window_s=600.0)
    throttle = LoginThrottle(policy, MemoryStore())
    checked, refused = [], []
    barrier = threading.Barrier(24)

    def guess(i):
        barrier.wait()
        try:
            throttle.attempt("192.0.2.9", "ann", lambda: (checked.append(i), threading.Event().wait(0.05),
                                                          WRONG)[-1])
        except LoginLocked:
            refused.append(i)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(checked) == 5 and len(refused) == 19


def test_the_counted_address():
    assert client_address("192.0.2.1", "203.0.113.9", trusted_proxies=0) == "192.0.2.1"  # spoofable
    assert client_address("127.0.0.1", "203.0.113.9", trusted_proxies=1) == "203.0.113.9"
    assert client_address("127.0.0.1", "6.6.6.6, 203.0.113.9", trusted_proxies=1) == "203.0.113.9"
    assert client_address("127.0.0.1", "203.0.113.9, 10.0.0.2", trusted_proxies=2) == "203.0.113.9"
    assert client_address("127.0.0.1", "203.0.113.9", trusted_proxies=2) == "127.0.0.1"  # too few hops
    assert client_address("127.0.0.1", "not-an-ip", trusted_proxies=1) == "127.0.0.1"
    one_host = [client_address(a, None, 0) for a in ("2001:db8:1:2:aaaa::1", "2001:db8:1:2:bbbb::9")]
    assert one_host == ["2001:db8:1:2::/64"] * 2  # one IPv6 host holds a whole /64
    assert client_address("::ffff:192.0.2.7", None, 0) == "192.0.2.7"
    assert pair_key("192.0.2.1", "ann") != pair_key("192.0.2.1", "Ann")
    assert "ann" not in pair_key("192.0.2.1", "ann")  # names are hashed in the keys


def test_single_flight_shares_one_result_and_one_error():
    from app.access.login_throttle import SingleFlight

    flight, calls, barrier = SingleFlight(), [], threading.Barrier(8)
    results = []

    def slow(value):
        calls.append(value)
        threading.Event().wait(0.2)
        if value == "bad":
            raise ValueError("no")
        return value

    def call(key):
        barrier.wait()
        try:
            results.append(flight.run(key, lambda: slow(key)))
        except ValueError as e:
            results.append(str(e))

    threads = [threading.Thread(target=call, args=("good" if i < 4 else "bad",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(calls) == ["bad", "good"] and sorted(results) == ["good"] * 4 + ["no"] * 4
    assert flight.run("good", lambda: "again") == "again"  # finished flights are forgotten
