"""Queue listener semantics against an in-memory queue client: leases, retries, poison, batches."""

from __future__ import annotations

import base64
import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from localdev.funchost.config import QueueOptions
from localdev.funchost.invocation import (
    Invoker,
    encode_message,
    index_functions,
    queue_output_values,
)
from localdev.funchost.queues import QueueListener, UndecodableMessage, decode_body
from tests.waiting import wait_until

CONNECTION = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;"
)


@dataclass
class FakeMessage:
    id: str
    content: str
    dequeue_count: int = 0
    pop_receipt: str = ""
    inserted_on: datetime = field(default_factory=lambda: datetime.now(UTC))
    expires_on: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(days=7))
    next_visible_on: datetime | None = None


class FakeQueue:
    """Enough of QueueClient for the listener: receive, update, delete, send."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: dict[str, FakeMessage] = {}
        self.visible_at: dict[str, float] = {}
        self.receipts: dict[str, str] = {}
        self.calls: list[tuple[str, Any]] = []
        self.sent: list[str] = []
        self._next = 0

    def add(self, content: str) -> str:
        with self.lock:
            self._next += 1
            message_id = f"m{self._next}"
            self.messages[message_id] = FakeMessage(message_id, content)
            self.visible_at[message_id] = 0.0
            return message_id

    def _receipt(self, message_id: str) -> str:
        self._next += 1
        self.receipts[message_id] = f"r{self._next}"
        return self.receipts[message_id]

    def receive_messages(
        self, *, max_messages: int, visibility_timeout: int, **_: Any
    ) -> list[Any]:
        with self.lock:
            self.calls.append(("receive", time.monotonic()))
            now = time.monotonic()
            ready = [m for m in self.messages.values() if self.visible_at[m.id] <= now]
            out = []
            for message in ready[:max_messages]:
                message.dequeue_count += 1
                self.visible_at[message.id] = now + visibility_timeout
                out.append(
                    FakeMessage(
                        message.id,
                        message.content,
                        message.dequeue_count,
                        self._receipt(message.id),
                    )
                )
            return out

    def update_message(
        self, message_id: str, pop_receipt: str, *, visibility_timeout: int
    ) -> FakeMessage:
        with self.lock:
            assert self.receipts[message_id] == pop_receipt, "stale pop receipt"
            self.calls.append(("update", visibility_timeout))
            self.visible_at[message_id] = time.monotonic() + visibility_timeout
            return FakeMessage(message_id, "", pop_receipt=self._receipt(message_id))

    def delete_message(self, message_id: str, pop_receipt: str) -> None:
        with self.lock:
            assert self.receipts[message_id] == pop_receipt, "stale pop receipt"
            self.calls.append(("delete", message_id))
            del self.messages[message_id]

    def send_message(self, content: str) -> None:
        with self.lock:
            self.sent.append(content)

    def close(self) -> None:
        self.calls.append(("close", None))


app = func.FunctionApp()
SEEN: list[tuple[str, int | None, float]] = []
SLEEP = {"seconds": 0.0}


@app.queue_trigger(arg_name="msg", queue_name="work", connection="AzureWebJobsStorage")
def queue_work(msg: func.QueueMessage) -> None:
    SEEN.append((msg.get_body().decode(), msg.dequeue_count, time.monotonic()))
    time.sleep(SLEEP["seconds"])
    if msg.get_body().startswith(b"fail"):
        raise ValueError("failing on purpose")


SPEC = index_functions(app)[0]


def listener(
    options: QueueOptions, lease: timedelta = timedelta(minutes=10)
) -> tuple[QueueListener, FakeQueue, FakeQueue]:
    SEEN.clear()
    SLEEP["seconds"] = 0.0
    result = QueueListener(SPEC, "work", CONNECTION, options, Invoker(), lease)
    queue, poison = FakeQueue(), FakeQueue()
    result._client = queue  # type: ignore[assignment]
    result._poison = poison  # type: ignore[assignment]
    return result, queue, poison


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


FAST = QueueOptions(max_polling_interval=timedelta(milliseconds=200))


def test_success_deletes_the_message() -> None:
    running, queue, poison = listener(FAST)
    queue.add(b64("hello"))
    running.start()
    try:
        wait_until(lambda: not queue.messages)
    finally:
        running.stop(5)
    assert SEEN[0][:2] == ("hello", 1)
    assert poison.sent == []


def test_failure_is_retried_until_max_dequeue_count_then_poisoned_unchanged() -> None:
    options = QueueOptions(max_dequeue_count=3, max_polling_interval=timedelta(milliseconds=200))
    running, queue, poison = listener(options)
    queue.add(b64("fail-always"))
    running.start()
    try:
        wait_until(lambda: poison.sent)
    finally:
        running.stop(5)
    assert [count for _, count, _ in SEEN] == [1, 2, 3]
    assert poison.sent == [b64("fail-always")]
    assert not queue.messages
    # Before the last attempt the message was made visible again after visibilityTimeout (0).
    assert [c for c in queue.calls if c[0] == "update"] == [("update", 0), ("update", 0)]


def test_visibility_timeout_delays_the_retry() -> None:
    options = QueueOptions(
        max_dequeue_count=2,
        visibility_timeout=timedelta(seconds=1),
        max_polling_interval=timedelta(milliseconds=100),
    )
    running, queue, poison = listener(options)
    queue.add(b64("fail-twice"))
    running.start()
    try:
        wait_until(lambda: poison.sent)
    finally:
        running.stop(5)
    assert SEEN[1][2] - SEEN[0][2] >= 0.9


def test_undecodable_message_counts_as_a_failure() -> None:
    options = QueueOptions(max_dequeue_count=2, max_polling_interval=timedelta(milliseconds=100))
    running, queue, poison = listener(options)
    queue.add("not base64!")
    running.start()
    try:
        wait_until(lambda: poison.sent)
    finally:
        running.stop(5)
    assert SEEN == []
    assert poison.sent == ["not base64!"]


def test_lease_is_renewed_while_the_function_runs() -> None:
    running, queue, _ = listener(FAST, lease=timedelta(seconds=1))
    SLEEP["seconds"] = 1.6
    queue.add(b64("slow"))
    running.start()
    try:
        wait_until(lambda: not queue.messages)
    finally:
        running.stop(5)
    renewals = [c for c in queue.calls if c[0] == "update"]
    assert renewals and all(timeout == 1 for _, timeout in renewals)
    assert len(SEEN) == 1  # never visible to a second receive while running


def test_a_batch_runs_concurrently() -> None:
    running, queue, _ = listener(FAST)
    SLEEP["seconds"] = 0.5
    for index in range(4):
        queue.add(b64(f"m{index}"))
    running.start()
    started = time.monotonic()
    try:
        wait_until(lambda: not queue.messages)
    finally:
        running.stop(5)
    assert time.monotonic() - started < 1.5
    assert sorted(body for body, _, _ in SEEN) == ["m0", "m1", "m2", "m3"]


def test_empty_queue_polling_backs_off_to_max_polling_interval() -> None:
    options = QueueOptions(max_polling_interval=timedelta(milliseconds=200))
    running, queue, _ = listener(options)
    running.start()
    time.sleep(1.0)
    running.stop(5)
    times = [t for kind, t in queue.calls if kind == "receive"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 4 <= len(times) <= 10
    assert gaps[0] < 0.2
    assert max(gaps) <= 0.25


def test_stop_waits_for_running_messages() -> None:
    running, queue, _ = listener(FAST)
    SLEEP["seconds"] = 0.5
    queue.add(b64("finish-me"))
    running.start()
    wait_until(lambda: SEEN)
    assert running.stop(5) is True
    assert not queue.messages


def test_message_encoding_round_trip() -> None:
    assert decode_body(encode_message("žluť", "base64"), "base64") == "žluť".encode()
    assert decode_body("raw text", "none") == b"raw text"
    assert encode_message(b"\x00\xff", "base64") == "AP8="
    with pytest.raises(UndecodableMessage):
        decode_body("%%%", "base64")


def test_output_values_are_flattened() -> None:
    assert queue_output_values(None) == []
    assert queue_output_values("a") == ["a"]
    assert queue_output_values(["a", b"b", func.QueueMessage(body="c")]) == ["a", b"b", b"c"]
    with pytest.raises(TypeError):
        queue_output_values(42)
