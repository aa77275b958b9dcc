"""Batches over ZeroMQ: CURVE-encrypted, acknowledged delivery; a backend that goes away and
comes back loses nothing; drops counted when nothing can be held."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq

from tests.agent.procs import Agent, Capture, JsonLineProc
from tests.agent.test_cuda_capture import CUDA_ERROR_INSUFFICIENT_DRIVER, assert_exact
from tests.workloads import cuda_expect
from xpucore import abi

pytestmark = pytest.mark.bpf


class CurveSink:
    """A CURVE ROUTER collecting batches until the agent's final one, acknowledging each
    (unless ack is False) as the backend's ingest does."""

    def __init__(self, tmp_path: Path, ack: bool = True) -> None:
        self.ack = ack
        self.ctx = zmq.Context()
        server_public, server_secret = zmq.curve_keypair()
        public, secret = zmq.curve_keypair()
        self.keyfile = tmp_path / "agent.keys"
        self.keyfile.write_text(
            f"server_public_key={server_public.decode()}\n"
            f"public_key={public.decode()}\n"
            f"secret_key={secret.decode()}\n"
        )
        self.keyfile.chmod(0o600)
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.curve_server = True
        self.sock.curve_secretkey = server_secret
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.batches: list[abi.Batch] = []
        self.arrived = threading.Condition()
        self.final = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while not self.final.is_set():
            if self.sock.poll(100):
                peer, frame = self.sock.recv_multipart()
                batch = abi.decode_batch(frame)
                with self.arrived:
                    self.batches.append(batch)
                    self.arrived.notify_all()
                if self.ack:
                    self.sock.send_multipart([peer, abi.encode_ack(batch.agent_pid, batch.seq)])
                if batch.flags & abi.BATCH_FINAL:
                    self.final.set()

    def wait_events(self, n: int, timeout: float) -> int:
        """Waits until n events have arrived (or timeout); returns how many have."""

        def count() -> int:
            return sum(b.event_count for b in self.batches)

        with self.arrived:
            self.arrived.wait_for(lambda: count() >= n, timeout)
            return count()

    def received(self) -> list[abi.Batch]:
        if not self.final.wait(30):
            raise TimeoutError("no final batch arrived")
        self.thread.join()
        return self.batches

    def close(self) -> None:
        self.final.set()
        self.thread.join()
        self.sock.close(linger=0)
        self.ctx.term()


def traced_calls(
    build: Path,
    iters: int,
    received: Callable[[], list[abi.Batch]],
    *agent_args: str,
    monitor_id: str = "test",
    before_stop: Callable[[dict], None] = lambda done: None,
) -> tuple[dict, dict, Capture]:
    """cuda_calls on 2 threads under an agent sending over ZeroMQ: (ready, done, capture).

    before_stop gets the workload's "done" line while the agent still runs."""
    work = JsonLineProc(
        [str(build / "tests/workloads/cuda_calls"), "--threads", "2", "--iters", str(iters)]
    )
    agent = None
    try:
        ready = work.read_json("ready")
        agent = Agent(
            build, None, "--target-pid", str(ready["pid"]), *agent_args, monitor_id=monitor_id
        )
        work.send_line("go")
        done = work.read_json("done")
        before_stop(done)
        return ready, done, agent.stop(received)
    finally:
        work.kill()
        if agent:
            agent.kill()


def test_curve_delivery_exact(build_dir: Path, tmp_path: Path) -> None:
    sink = CurveSink(tmp_path)
    try:
        ready, _, cap = traced_calls(
            build_dir,
            2,
            sink.received,
            "--backend-zmq-endpoint",
            sink.endpoint,
            "--curve-keyfile",
            str(sink.keyfile),
            monitor_id="mon-curve",
        )
    finally:
        sink.close()
    assert cap.returncode == 0, cap.stderr
    assert {b.monitor_id for b in cap.batches} == {"mon-curve"}
    assert {b.machine_id for b in cap.batches} == {"testmachine"}
    assert_exact(
        cap, ready, cuda_expect.expected_calls(2, 2), CUDA_ERROR_INSUFFICIENT_DRIVER, "cuda_calls"
    )


def test_idle_threads_calls_arrive_while_running(build_dir: Path, tmp_path: Path) -> None:
    """The probe sends completed calls 8 at a time per thread; what a thread that went
    idle still holds reaches the backend within the flush interval, not at stop."""
    sink = CurveSink(tmp_path)
    live: list[int] = []

    def all_arrive(done: dict) -> None:
        made = sum(done["calls"].values())
        assert made % 8, "the workload must leave a partial batch behind"
        live.append(sink.wait_events(made, timeout=10))
        live.append(made)

    try:
        ready, _, cap = traced_calls(
            build_dir,
            1,
            sink.received,
            "--backend-zmq-endpoint",
            sink.endpoint,
            "--curve-keyfile",
            str(sink.keyfile),
            "--flush-ms",
            "50",
            before_stop=all_arrive,
        )
    finally:
        sink.close()
    assert cap.returncode == 0, cap.stderr
    arrived, made = live
    assert arrived == made
    assert_exact(
        cap, ready, cuda_expect.expected_calls(2, 1), CUDA_ERROR_INSUFFICIENT_DRIVER, "cuda_calls"
    )


def test_full_send_queue_drops_are_counted(build_dir: Path, tmp_path: Path) -> None:
    """Nobody listens and one batch may be held: the rest, and that one, are counted lost."""
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as probe:
        port = probe.bind_to_random_port("tcp://127.0.0.1")
        probe.unbind(f"tcp://127.0.0.1:{port}")  # a port with nobody behind it
    _, done, cap = traced_calls(
        build_dir,
        3,
        list,
        "--backend-zmq-endpoint",
        f"tcp://127.0.0.1:{port}",
        "--send-hwm",
        "1",
        "--batch-events",
        "1",
        "--linger-ms",
        "0",
    )
    made = sum(done["calls"].values())
    stats = cap.stats
    assert stats["send_drops"] > 0
    # every event was either handed to the socket or counted as dropped
    assert stats["events"] + stats["send_drops"] == made
    assert Counter(done["calls"]) == Counter(c.symbol for c in cuda_expect.expected_calls(2, 3))
    assert f"{stats['send_drops']} send" in cap.stderr
