"""The local Functions host as a subprocess, against Azurite, serving tests/apps/sample_app.py."""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from localdev.azurite import Azurite
from localdev.host import HostProcess, LocalHost, load_host_json
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HOST_JSON = ROOT / "tests" / "apps" / "host.json"
NEVER = "0 0 0 1 1 *"  # once a year: keeps the sample timer quiet where it is not under test


def records(directory: Path, function: str) -> list[dict[str, Any]]:
    """What a sample function recorded, one dict per call."""
    file = directory / f"{function}.jsonl"
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


_clients: list[QueueClient] = []


@pytest.fixture(autouse=True, scope="module")
def _close_queue_clients() -> Iterator[None]:
    """Close the test's queue clients: open keep-alive connections delay Azurite's shutdown."""
    yield
    while _clients:
        _clients.pop().close()


def base64_queue(connection_string: str, name: str) -> QueueClient:
    """A queue client that encodes as the host expects (base64)."""
    client = QueueClient.from_connection_string(
        connection_string,
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )
    _clients.append(client)
    return client


def raw_queue(connection_string: str, name: str) -> QueueClient:
    """A queue client that sends and reads the text as it is stored."""
    client = QueueClient.from_connection_string(connection_string, name)
    _clients.append(client)
    return client


class SampleHost:
    """A running sample-app host and the names it was given."""

    def __init__(self, process: HostProcess, env: dict[str, str], record_dir: Path) -> None:
        self.process = process
        self.env = env
        self.record_dir = record_dir

    def records(self, function: str) -> list[dict[str, Any]]:
        """What a function recorded so far."""
        return records(self.record_dir, function)


def start_sample_host(
    azurite: Azurite,
    tmp: Path,
    prefix: str,
    extra_env: dict[str, str],
    args: list[str],
    settings_values: dict[str, str] | None = None,
) -> SampleHost:
    """Start the sample app in `python -m localdev.host` with per-test queue names."""
    record_dir = tmp / "records"
    record_dir.mkdir()
    settings = tmp / "local.settings.json"
    if settings_values is not None:
        settings.write_text(json.dumps({"IsEncrypted": False, "Values": settings_values}))
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "SAMPLE_RECORD_DIR": str(record_dir),
        "SAMPLE_FAIL_QUEUE": f"{prefix}-fail",
        "SAMPLE_OK_QUEUE": f"{prefix}-ok",
        "SAMPLE_RELAY_QUEUE": f"{prefix}-relay",
        "SAMPLE_TIMER_SLEEP": "0",
        **extra_env,
    }
    if "SAMPLE_TIMER_SCHEDULE" not in (settings_values or {}):
        env["SAMPLE_TIMER_SCHEDULE"] = NEVER
    process = HostProcess(
        "tests.apps.sample_app:app",
        cwd=ROOT,
        env={**os.environ, **env},
        host_json=HOST_JSON,
        settings=settings,
        extra_args=args,
        log_path=tmp / "host.log",
    )
    process.start(timeout=60)
    return SampleHost(process, env, record_dir)


@pytest.fixture(scope="module")
def sample(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleHost]:
    """One host for the HTTP and queue scenarios (each queue scenario uses its own queue)."""
    prefix = "h" + uuid.uuid4().hex[:10]
    host = start_sample_host(azurite, tmp_path_factory.mktemp("host"), prefix, {}, [])
    yield host
    code = host.process.stop()
    assert code == 0, host.process.logs()
    assert "Host stopped" in host.process.logs()


# --- HTTP -------------------------------------------------------------------------------------


def test_route_parameter_query_and_headers_reach_the_function(sample: SampleHost) -> None:
    item = str(uuid.uuid4())
    status, headers, body = sample.process.request("GET", f"/api/items/{item}?q=hello")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["x-sample"] == "1"
    data = json.loads(body)
    assert data["id"] == item
    assert data["q"] == "hello"
    assert data["url"].endswith(f"/api/items/{item}?q=hello")


def test_a_long_query_string_arriving_in_pieces_reaches_the_function(sample: SampleHost) -> None:
    # 60 KB of query sent in two writes: the web server's parser must not refuse a request line
    # because it came in more than one read (h11 did, past 16 KB, with its own text/plain 400).
    item = str(uuid.uuid4())
    head = (
        f"GET /api/items/{item}?q={'%F3%87%AA%B5' * 5000} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nConnection: close\r\n\r\n"
    ).encode()
    url = urllib.parse.urlsplit(sample.process.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as conn:
        conn.sendall(head[:20000])
        time.sleep(0.3)
        conn.sendall(head[20000:])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"200", answer[:300]
    assert len(json.loads(rest.partition(b"\r\n\r\n")[2])["q"]) == 5000


def test_guid_constraint_rejects_a_non_guid_with_404(sample: SampleHost) -> None:
    status, _, body = sample.process.request("GET", "/api/items/12345")
    assert status == 404
    assert body == b""


def test_literal_segment_wins_over_parameter_and_matches_case_insensitively(
    sample: SampleHost,
) -> None:
    assert sample.process.request("GET", "/api/items/new")[2] == b"new"
    status, headers, body = sample.process.request("GET", "/API/Items/NEW")
    assert (status, body) == (200, b"new")
    assert headers["content-type"] == "text/plain; charset=utf-8"


def test_wrong_method_on_a_matching_path_is_405(sample: SampleHost) -> None:
    status, _, _ = sample.process.request("POST", f"/api/items/{uuid.uuid4()}", body=b"{}")
    assert status == 405


def test_unknown_path_is_404(sample: SampleHost) -> None:
    assert sample.process.request("GET", "/api/nowhere")[0] == 404
    assert sample.process.request("GET", "/items/new")[0] == 404  # the prefix is required


def test_int_and_optional_bool_constraints(sample: SampleHost) -> None:
    assert json.loads(sample.process.request("GET", "/api/counts/7")[2]) == {"n": "7"}
    assert json.loads(sample.process.request("GET", "/api/counts/7/TRUE")[2]) == {
        "n": "7",
        "flag": "TRUE",
    }
    assert sample.process.request("GET", "/api/counts/7/maybe")[0] == 404
    assert sample.process.request("GET", "/api/counts/seven")[0] == 404


def test_async_function_gets_catch_all_header_and_body(sample: SampleHost) -> None:
    status, _, body = sample.process.request(
        "PUT", "/api/echo/a/b/c.txt", body=b"payload", headers={"X-Test": "yes"}
    )
    assert status == 201
    expected = {"rest": "a/b/c.txt", "header": "yes", "body": "payload", "method": "PUT"}
    assert json.loads(body) == expected


def test_exception_is_500_with_empty_body_and_traceback_in_log(sample: SampleHost) -> None:
    status, _, body = sample.process.request("GET", "/api/boom")
    assert status == 500
    assert body == b""
    logs = wait_until(lambda: "secret internals" in sample.process.logs() and sample.process.logs())
    assert "Traceback" in logs
    assert "Executed 'Functions.http_boom' (Failed" in logs


def test_returning_none_is_204(sample: SampleHost) -> None:
    status, _, body = sample.process.request("POST", "/api/nothing", body=b"")
    assert (status, body) == (204, b"")


def test_each_invocation_is_logged_like_the_host(sample: SampleHost) -> None:
    sample.process.request("GET", "/api/items/new")
    logs = wait_until(
        lambda: (
            "Executed 'Functions.http_new_item' (Succeeded" in sample.process.logs()
            and sample.process.logs()
        )
    )
    assert "Executing 'Functions.http_new_item' (Reason=" in logs


# --- queues -----------------------------------------------------------------------------------


def test_failing_message_is_tried_five_times_then_moved_to_poison(
    sample: SampleHost, azurite: Azurite
) -> None:
    queue = sample.env["SAMPLE_FAIL_QUEUE"]
    content = json.dumps({"orderId": str(uuid.uuid4()), "note": "žluťoučký"})
    base64_queue(azurite.connection_string, queue).send_message(content)

    poison = base64_queue(azurite.connection_string, f"{queue}-poison")
    messages = wait_until(lambda: list(poison.peek_messages(max_messages=32)), timeout=60)
    assert [m.content for m in messages] == [content]
    attempts = sample.records("queue_always_fails")
    assert [a["dequeue_count"] for a in attempts] == [1, 2, 3, 4, 5]
    assert {a["body"] for a in attempts} == {content}
    assert list(raw_queue(azurite.connection_string, queue).peek_messages()) == []
    time.sleep(1.5)  # nothing more happens to a poisoned message
    assert len(sample.records("queue_always_fails")) == 5


def test_successful_message_arrives_decoded_and_is_deleted(
    sample: SampleHost, azurite: Azurite
) -> None:
    queue = sample.env["SAMPLE_OK_QUEUE"]
    content = json.dumps({"customerId": str(uuid.uuid4()), "name": "Příliš žluťoučký kůň"})
    sent = base64_queue(azurite.connection_string, queue).send_message(content)

    got = wait_until(lambda: [r for r in sample.records("queue_records") if r["id"] == sent.id])
    assert got[0]["body"] == content
    assert got[0]["dequeue_count"] == 1
    assert got[0]["pop_receipt"] is True
    assert got[0]["inserted"] is not None
    wait_until(lambda: not list(raw_queue(azurite.connection_string, queue).peek_messages()))
    assert not list(raw_queue(azurite.connection_string, f"{queue}-poison").peek_messages())


def test_message_that_is_not_base64_fails_until_poisoned(
    sample: SampleHost, azurite: Azurite
) -> None:
    queue = sample.env["SAMPLE_RELAY_QUEUE"]  # its own queue: the poison queue stays unambiguous
    raw_queue(azurite.connection_string, queue).send_message("not base64 at all!")

    poison = raw_queue(azurite.connection_string, f"{queue}-poison")
    messages = wait_until(lambda: list(poison.peek_messages()), timeout=60)
    assert [m.content for m in messages] == ["not base64 at all!"]
    assert all("not base64" not in r["body"].lower() for r in sample.records("queue_records"))


def test_queue_output_binding_is_sent_after_success(sample: SampleHost, azurite: Azurite) -> None:
    marker = f"relay-{uuid.uuid4()}"
    base64_queue(azurite.connection_string, sample.env["SAMPLE_RELAY_QUEUE"]).send_message(marker)
    wait_until(lambda: any(r["body"] == marker.upper() for r in sample.records("queue_records")))


def test_admin_endpoint_runs_a_queue_function_once(sample: SampleHost) -> None:
    marker = f"admin-{uuid.uuid4()}"
    status, _, _ = sample.process.request(
        "POST", "/admin/functions/queue_records", body=json.dumps({"input": marker}).encode()
    )
    assert status == 202
    wait_until(lambda: any(r["body"] == marker for r in sample.records("queue_records")))
    assert sample.process.request("POST", "/admin/functions/nope", body=b"{}")[0] == 404


# --- timers -----------------------------------------------------------------------------------


def test_timer_from_setting_fires_every_second_without_overlapping(
    azurite: Azurite, tmp_path: Path, unique_name: str
) -> None:
    schedule_only_in_settings = {"SAMPLE_TIMER_SCHEDULE": "* * * * * *", "SAMPLE_TIMER_SLEEP": "60"}
    host = start_sample_host(
        azurite,
        tmp_path,
        unique_name,
        # The environment wins over local.settings.json: the sleep stays 1.3 s, not 60.
        {"SAMPLE_TIMER_SLEEP": "1.3"},
        ["--no-queues"],
        settings_values=schedule_only_in_settings,
    )
    try:
        wait_until(lambda: len(host.records("timer_sleeps")) >= 3, timeout=20)
    finally:
        code = host.process.stop()
    assert code == 0, host.process.logs()
    runs = sorted(host.records("timer_sleeps"), key=lambda r: r["start"])
    assert len(runs) >= 3
    assert all(run["end"] - run["start"] < 5 for run in runs)
    for earlier, later in itertools.pairwise(runs):
        assert later["start"] >= earlier["end"], "timer runs overlapped"
    # A run in progress at shutdown is allowed to finish.
    assert "still running" not in host.process.logs()


# --- in process -------------------------------------------------------------------------------


def test_in_process_host_serves_http_and_queues(
    azurite: Azurite, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.apps import sample_app

    for key, value in {
        "AzureWebJobsStorage": azurite.connection_string,
        "SAMPLE_RECORD_DIR": str(tmp_path),
        "SAMPLE_FAIL_QUEUE": f"{unique_name}-fail",
        "SAMPLE_OK_QUEUE": f"{unique_name}-ok",
        "SAMPLE_RELAY_QUEUE": f"{unique_name}-relay",
        "SAMPLE_TIMER_SCHEDULE": NEVER,
    }.items():
        monkeypatch.setenv(key, value)
    host = LocalHost(sample_app.app, load_host_json(HOST_JSON), port=0, shutdown_grace=5)
    with host:
        with urllib.request.urlopen(f"{host.base_url}/api/items/new", timeout=10) as reply:
            assert reply.read() == b"new"
        base64_queue(azurite.connection_string, f"{unique_name}-ok").send_message("in-process")
        wait_until(lambda: records(tmp_path, "queue_records"))
    assert records(tmp_path, "queue_records")[0]["body"] == "in-process"
