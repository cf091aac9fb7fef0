"""Queue triggers with the Storage extension's semantics: batches, backoff, leases, poison."""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StorageMessage

from localdev.funchost.config import QueueOptions
from localdev.funchost.invocation import FunctionSpec, Invoker, encode_message

log = logging.getLogger("localdev.host")

# How long a received message stays invisible while the function runs (renewed at half-time).
DEFAULT_LEASE = timedelta(minutes=10)
_MIN_POLL = 0.1


class UndecodableMessage(ValueError):
    """The message text is not what messageEncoding promises."""


def decode_body(text: str, encoding: str) -> bytes:
    """The message body the function sees, from the queue's text under messageEncoding."""
    if encoding == "none":
        return text.encode("utf-8")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise UndecodableMessage(
            "message is not valid base64 (host.json messageEncoding is base64)"
        ) from error


def ensure_queue(client: QueueClient) -> None:
    """Create a queue if it does not exist."""
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()


@dataclass
class _Lease:
    """A received message's current pop receipt, shared by the worker and the renewer."""

    message: StorageMessage
    pop_receipt: str
    renewed_at: float = field(default_factory=time.monotonic)
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class QueueListener:
    """Polls one queue for one function, like the host's QueueListener."""

    def __init__(
        self,
        spec: FunctionSpec,
        queue_name: str,
        connection_string: str,
        options: QueueOptions,
        invoker: Invoker,
        lease: timedelta = DEFAULT_LEASE,
    ) -> None:
        self.spec = spec
        self.queue_name = queue_name
        self.options = options
        self._invoker = invoker
        self._lease_seconds = max(1, int(lease.total_seconds()))
        self._client = QueueClient.from_connection_string(connection_string, queue_name)
        self._poison = QueueClient.from_connection_string(connection_string, f"{queue_name}-poison")
        # The host keeps at most batchSize + newBatchThreshold messages in flight per function.
        self._capacity = options.batch_size + options.new_batch_threshold
        self._pool = ThreadPoolExecutor(self._capacity, thread_name_prefix=f"queue-{spec.name}")
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._leases: dict[str, _Lease] = {}
        self._threads: list[threading.Thread] = []

    @property
    def in_flight(self) -> int:
        """Messages being processed right now."""
        with self._changed:
            return len(self._leases)

    def prepare(self) -> None:
        """Create the queue and its poison queue."""
        ensure_queue(self._client)
        ensure_queue(self._poison)

    def start(self) -> None:
        """Start polling and lease renewal in background threads."""
        for target, suffix in ((self._poll_loop, "poll"), (self._renew_loop, "renew")):
            thread = threading.Thread(
                target=target, name=f"queue-{self.spec.name}-{suffix}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, grace: float) -> bool:
        """Stop polling, wait up to `grace` seconds for running messages; True if all finished."""
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._changed:
            finished = self._changed.wait_for(
                lambda: not self._leases, max(0.0, deadline - time.monotonic())
            )
        self._pool.shutdown(wait=finished, cancel_futures=True)
        if finished:
            # Open keep-alive connections would hold up Azurite's own shutdown.
            self._client.close()
            self._poison.close()
        if not finished:
            log.warning(
                "Functions.%s: %d message(s) still running at shutdown; they reappear when "
                "their lease ends",
                self.spec.name,
                len(self._leases),
            )
        return finished

    def _poll_loop(self) -> None:
        delay = _MIN_POLL
        ceiling = self.options.max_polling_interval.total_seconds()
        while not self._stop.is_set():
            with self._changed:
                # Fetch the next batch only once the running ones drop to newBatchThreshold.
                self._changed.wait_for(
                    lambda: (
                        self._stop.is_set() or len(self._leases) <= self.options.new_batch_threshold
                    )
                )
            if self._stop.is_set():
                return
            try:
                messages = list(
                    self._client.receive_messages(
                        messages_per_page=self.options.batch_size,
                        max_messages=self.options.batch_size,
                        visibility_timeout=self._lease_seconds,
                    )
                )
            except Exception as error:
                log.warning("Queue %s: receive failed (%s); retrying", self.queue_name, error)
                messages = []
            if not messages:
                # Exponential backoff with jitter on an empty queue, capped at maxPollingInterval.
                self._stop.wait(delay * random.uniform(0.8, 1.0))
                delay = min(delay * 2, ceiling)
                continue
            delay = _MIN_POLL
            for message in messages:
                lease = _Lease(message, message.pop_receipt or "")
                with self._changed:
                    self._leases[message.id] = lease
                self._pool.submit(self._process, lease)

    def _renew_loop(self) -> None:
        interval = self._lease_seconds / 2
        while True:
            stopping = self._stop.wait(min(interval / 4, 5.0))
            with self._changed:
                leases = list(self._leases.values())
            # Keep renewing during shutdown until the last running message is settled.
            if stopping and not leases:
                return
            for lease in leases:
                if time.monotonic() - lease.renewed_at < interval:
                    continue
                with lease.lock:
                    if lease.done:
                        continue
                    try:
                        updated = self._client.update_message(
                            lease.message.id,
                            lease.pop_receipt,
                            visibility_timeout=self._lease_seconds,
                        )
                        lease.pop_receipt = updated.pop_receipt or lease.pop_receipt
                        lease.renewed_at = time.monotonic()
                    except Exception:
                        log.exception(
                            "Queue %s: could not renew message %s",
                            self.queue_name,
                            lease.message.id,
                        )

    def _trigger_value(self, message: StorageMessage) -> QueueMessage:
        return QueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=decode_body(message.content or "", self.options.message_encoding),
            dequeue_count=message.dequeue_count,
            expiration_time=message.expires_on,
            insertion_time=message.inserted_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )

    def _process(self, lease: _Lease) -> None:
        message = lease.message
        try:
            try:
                trigger_value = self._trigger_value(message)
            except UndecodableMessage as error:
                # Undecodable counts as a failed attempt, so it ends in the poison queue.
                log.error("Queue %s: message %s: %s", self.queue_name, message.id, error)
                succeeded = False
            else:
                reason = f"New queue message detected on '{self.queue_name}'."
                succeeded = self._invoker.invoke(self.spec, trigger_value, reason).succeeded
            self._settle(lease, succeeded)
        except Exception:
            log.exception("Queue %s: could not settle message %s", self.queue_name, message.id)
        finally:
            with self._changed:
                self._leases.pop(message.id, None)
                self._changed.notify_all()

    def _settle(self, lease: _Lease, succeeded: bool) -> None:
        message = lease.message
        with lease.lock:
            lease.done = True
            if succeeded:
                self._client.delete_message(message.id, lease.pop_receipt)
            elif (message.dequeue_count or 0) >= self.options.max_dequeue_count:
                # The original text, unchanged: with base64 encoding it stays base64 in -poison.
                self._poison.send_message(message.content)
                self._client.delete_message(message.id, lease.pop_receipt)
                log.warning(
                    "Message %s has reached MaxDequeueCount of %d. "
                    "Moving message to queue '%s-poison'.",
                    message.id,
                    self.options.max_dequeue_count,
                    self.queue_name,
                )
            else:
                self._client.update_message(
                    message.id,
                    lease.pop_receipt,
                    visibility_timeout=int(self.options.visibility_timeout.total_seconds()),
                )


class QueueSender:
    """Sends to queue output bindings, with the host's messageEncoding; clients cached per queue."""

    def __init__(
        self,
        options: QueueOptions,
        connection_lookup: Callable[[Mapping[str, Any]], tuple[str, str]],
    ) -> None:
        self._options = options
        self._lookup = connection_lookup
        self._clients: dict[tuple[str, str], QueueClient] = {}
        self._lock = threading.Lock()

    def __call__(self, binding: Mapping[str, Any], values: list[str | bytes]) -> None:
        """Send each value as one message to the binding's queue."""
        queue_name, connection = self._lookup(binding)
        key = (connection, queue_name)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = QueueClient.from_connection_string(connection, queue_name)
                ensure_queue(client)
                self._clients[key] = client
        for value in values:
            client.send_message(encode_message(value, self._options.message_encoding))

    def close(self) -> None:
        """Close the cached queue clients."""
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
