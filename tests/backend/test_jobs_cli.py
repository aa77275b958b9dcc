"""`xputrace jobs ranks`: the ranks body as a table."""

from __future__ import annotations

from backend.cli import ranks_table


def test_ranks_table_aligns_and_says_what_is_missing() -> None:
    body = {
        "jobId": "j1",
        "worldSize": 3,
        "ranksSeen": 2,
        "missing": 1,
        "ranks": [
            {"rank": 0, "localRank": 0, "hostname": "node-a", "pid": 7, "device": "0",
             "status": "running", "nodeId": "m1", "jobId": "p1"},
            {"rank": 12, "localRank": None, "hostname": "b", "pid": 12345, "device": None,
             "status": "exited", "nodeId": "m2", "jobId": "p2"},
        ],
    }  # fmt: skip
    assert ranks_table(body).splitlines() == [
        "job j1: world size 3, 2 rank(s) seen, 1 missing",
        "RANK  LOCAL  HOST    PID    DEVICE  STATUS   MACHINE  JOB",
        "0     0      node-a  7      0       running  m1       p1",
        "12    -      b       12345  -       exited   m2       p2",
    ]
    unknown = ranks_table({**body, "worldSize": None, "missing": None, "ranks": []})
    assert unknown.splitlines() == [
        "job j1: world size unknown, 2 rank(s) seen",
        "RANK  LOCAL  HOST  PID  DEVICE  STATUS  MACHINE  JOB",
    ]
