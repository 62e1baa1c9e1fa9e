"""azure-sim fault scripts: per-endpoint, in order, then normal service."""

from __future__ import annotations

import threading

from azure_sim.faults import Fault, FaultScript


def test_consumed_in_order_per_endpoint():
    script = FaultScript([
        {"endpoint": "imds", "status": 500, "count": 2},
        {"endpoint": "health", "status": "reset"},
        {"endpoint": "imds", "status": 429, "retry_after": 3, "delay_s": 0.5},
    ])
    assert script.remaining("imds") == 3
    assert script.remaining("health") == 1
    assert script.next("imds") == Fault(500)
    assert script.next("health") == Fault("reset")
    assert script.next("health") is None
    assert script.next("imds") == Fault(500)
    assert script.next("imds") == Fault(429, 0.5, 3)
    assert script.next("imds") is None
    assert script.next("imds") is None
    assert script.remaining("imds") == 0


def test_count_defaults_to_one_and_expands():
    script = FaultScript([{"endpoint": "goalstate", "status": 503, "count": 4},
                          {"endpoint": "versions", "status": 404}])
    assert [script.next("goalstate") for _ in range(5)] == [Fault(503)] * 4 + [None]
    assert script.next("versions") == Fault(404)
    assert script.next("versions") is None


def test_untouched_endpoints_are_served_normally():
    script = FaultScript([{"endpoint": "imds", "status": 500}])
    assert script.next("goalstate") is None
    assert script.remaining("goalstate") == 0
    assert FaultScript().next("imds") is None


def test_thread_safe_total_count_exact():
    script = FaultScript([{"endpoint": "imds", "status": 500, "count": 500},
                          {"endpoint": "imds", "status": 503, "count": 300}])
    got: list[Fault] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def worker():
        start.wait()
        mine = []
        for _ in range(100):
            fault = script.next("imds")
            if fault is not None:
                mine.append(fault)
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 1600 requests, exactly 800 faults handed out, none twice, none lost.
    assert len(got) == 800
    assert sum(f.status == 500 for f in got) == 500
    assert sum(f.status == 503 for f in got) == 300
    assert script.remaining("imds") == 0
    assert script.next("imds") is None
