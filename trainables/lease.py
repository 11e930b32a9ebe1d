"""The cluster-wide lock a trial takes while it trains a reference model the shared store lacks, or
commits a metrics record it lacks (mixunlearn/reference_store.py).

    with LeaseLock()(key):      # one holder per key across every node, trial, driver and sweep
        ...

The key's holder is kept by one Ray actor, named and detached so that every trial, every driver and every
sweep of the cluster meets the same one (created by whoever asks first: `get_if_exists`). The lock is a
lease: the holder renews it from a background thread, so a holder that is killed (SIGKILL, a lost node)
stops renewing and, once LEASE_S has passed, the next waiter takes the key over and trains the entry
itself. What the killed holder had uploaded by then is never read: the store commits an entry by writing
its record last (mixunlearn/reference_store.py).

This module imports Ray alone: the actor's worker process loads it (and trainables/entry.py) and nothing
else, so the first trial that needs the lock waits for a small process, not for torch and MLflow.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import ray

LOCKS_ACTOR = "mixsweep-reference-locks"
LOCKS_NAMESPACE = "mixsweep"
LEASE_S = 60.0    # a killed trainer's key is free again this long after its last renewal
POLL_S = 1.0      # how often a waiter asks again
CALL_TIMEOUT_S = 120.0   # an unreachable lock actor fails the trial instead of hanging it


@ray.remote(num_cpus=0, max_restarts=-1)
class ReferenceLocks:
    """key -> (holder, lease end). Every call is short: waiters poll, nobody blocks the actor.
    The clock is this process's monotonic one, so the nodes' clocks need not agree."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[str, float]] = {}

    def acquire(self, key: str, holder: str, lease_s: float) -> bool:
        now = time.monotonic()
        current = self.held.get(key)
        if current is None or current[0] == holder or current[1] < now:
            self.held[key] = (holder, now + lease_s)
            return True
        return False

    def renew(self, key: str, holder: str, lease_s: float) -> bool:
        """False once another holder took the key over (this one's lease had run out)."""
        if self.held.get(key, ("", 0.0))[0] != holder:
            return False
        self.held[key] = (holder, time.monotonic() + lease_s)
        return True

    def release(self, key: str, holder: str) -> None:
        if self.held.get(key, ("", 0.0))[0] == holder:
            del self.held[key]

    def holder(self, key: str) -> str | None:
        current = self.held.get(key)
        return current[0] if current and current[1] >= time.monotonic() else None


def locks_actor():
    # "DEFAULT" scheduling: a trial runs in Tune's placement group, and an actor it starts would otherwise
    # join that group and die (for good) when the trial ends.
    return ReferenceLocks.options(name=LOCKS_ACTOR, namespace=LOCKS_NAMESPACE, get_if_exists=True,
                                  lifetime="detached", scheduling_strategy="DEFAULT").remote()


class LeaseLock:
    """lock(key): a context manager holding `key` cluster-wide (a ReferenceStore LockFactory)."""

    def __init__(self, *, lease_s: float = LEASE_S, poll_s: float = POLL_S) -> None:
        self.lease_s = lease_s
        self.poll_s = poll_s

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        actor = locks_actor()
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        waited = time.monotonic()
        told = False
        while not ray.get(actor.acquire.remote(key, holder, self.lease_s), timeout=CALL_TIMEOUT_S):
            if not told:
                print(f"reference {key[:12]}: another process is training it; waiting for it", file=sys.stderr,
                      flush=True)
                told = True
            time.sleep(self.poll_s)
        if told:
            print(f"reference {key[:12]}: lock taken after {time.monotonic() - waited:.0f} s", file=sys.stderr,
                  flush=True)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease_s / 4):
                if not ray.get(actor.renew.remote(key, holder, self.lease_s), timeout=CALL_TIMEOUT_S):
                    print(f"reference {key[:12]}: lost the lock (lease ran out); another process trains it too",
                          file=sys.stderr, flush=True)
                    return

        renewer = threading.Thread(target=renew, name=f"lease-{key[:8]}", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()
            ray.get(actor.release.remote(key, holder), timeout=CALL_TIMEOUT_S)
