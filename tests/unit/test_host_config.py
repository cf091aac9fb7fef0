"""host.json defaults, TimeSpan parsing, local.settings.json and %Setting% resolution."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from localdev.funchost.config import (
    DEVELOPMENT_STORAGE,
    HostConfigError,
    HostOptions,
    QueueOptions,
    load_host_json,
    load_settings,
    local_http_port,
    parse_timespan,
    resolve_setting_refs,
    storage_connection_string,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:00:00", timedelta(0)),
        ("00:00:30", timedelta(seconds=30)),
        ("00:01:00", timedelta(minutes=1)),
        ("01:02:03", timedelta(hours=1, minutes=2, seconds=3)),
        ("00:00:00.100", timedelta(milliseconds=100)),
        ("00:00:01.5", timedelta(seconds=1, milliseconds=500)),
        ("1.02:00:00", timedelta(days=1, hours=2)),
        ("00:10", timedelta(minutes=10)),
        ("7", timedelta(days=7)),
        ("-00:00:05", timedelta(seconds=-5)),
    ],
)
def test_timespan_parsing(text: str, expected: timedelta) -> None:
    assert parse_timespan(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "00:60:00", "24:00:00", "1:2:3:4", "00:00:61"])
def test_bad_timespans_are_refused(text: str) -> None:
    with pytest.raises(HostConfigError):
        parse_timespan(text)


def test_queue_defaults_are_the_storage_extension_defaults() -> None:
    options = HostOptions.from_host_json({"version": "2.0"})
    assert options.route_prefix == "api"
    assert options.queues == QueueOptions(
        batch_size=16,
        new_batch_threshold=8,
        max_dequeue_count=5,
        visibility_timeout=timedelta(0),
        max_polling_interval=timedelta(minutes=1),
        message_encoding="base64",
    )


def test_host_json_values_are_read_case_insensitively() -> None:
    host_json = {
        "Extensions": {
            "HTTP": {"RoutePrefix": "/v1/"},
            "queues": {
                "BatchSize": 4,
                "maxDequeueCount": 2,
                "visibilityTimeout": "00:00:10",
                "maxPollingInterval": "00:00:02",
                "messageEncoding": "None",
            },
        }
    }
    options = HostOptions.from_host_json(host_json)
    assert options.route_prefix == "v1"
    assert options.queues.batch_size == 4
    assert options.queues.new_batch_threshold == 2  # batchSize / 2 unless set
    assert options.queues.max_dequeue_count == 2
    assert options.queues.visibility_timeout == timedelta(seconds=10)
    assert options.queues.max_polling_interval == timedelta(seconds=2)
    assert options.queues.message_encoding == "none"


def test_empty_route_prefix_is_allowed() -> None:
    assert (
        HostOptions.from_host_json({"extensions": {"http": {"routePrefix": ""}}}).route_prefix == ""
    )


@pytest.mark.parametrize(
    "queues",
    [
        {"batchSize": 0},
        {"batchSize": 33},
        {"maxDequeueCount": 0},
        {"maxPollingInterval": "00:00:00.050"},
        {"maxPollingInterval": 60},
        {"messageEncoding": "utf8"},
    ],
)
def test_invalid_queue_options_are_refused(queues: dict[str, object]) -> None:
    with pytest.raises(HostConfigError):
        QueueOptions.from_host_json({"extensions": {"queues": queues}})


def test_project_host_json_parses(tmp_path: Path) -> None:
    assert load_host_json(tmp_path / "missing.json") == {"version": "2.0"}
    file = tmp_path / "host.json"
    file.write_text('\ufeff{"version": "2.0", "extensions": {"queues": {"maxDequeueCount": 5}}}')
    assert HostOptions.from_host_json(load_host_json(file)).queues.max_dequeue_count == 5


def test_settings_fill_the_environment_but_never_override_it(tmp_path: Path) -> None:
    file = tmp_path / "local.settings.json"
    file.write_text(
        json.dumps(
            {
                "IsEncrypted": False,
                "Values": {"A": "from-file", "B": "from-file", "N": 5},
                "Host": {"LocalHttpPort": 7072},
            }
        )
    )
    env = {"A": "from-env"}
    load_settings(file, env)
    assert env == {"A": "from-env", "B": "from-file", "N": "5"}
    assert local_http_port(file) == 7072
    assert load_settings(tmp_path / "missing.json", env) == {}


def test_setting_references_resolve_from_the_environment() -> None:
    env = {"QUEUE": "orders", "ENV": "dev"}
    assert resolve_setting_refs("%QUEUE%", env) == "orders"
    assert resolve_setting_refs("%QUEUE%-%ENV%", env) == "orders-dev"
    assert resolve_setting_refs("plain", env) == "plain"
    with pytest.raises(HostConfigError, match="MISSING"):
        resolve_setting_refs("%MISSING%", env)


def test_connection_lookup_like_the_host() -> None:
    assert storage_connection_string(None, {"AzureWebJobsStorage": "x"}) == "x"
    assert storage_connection_string("Other", {"Other": "y"}) == "y"
    assert storage_connection_string("Other", {"AzureWebJobsOther": "z"}) == "z"
    assert storage_connection_string(
        None, {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    ) == (DEVELOPMENT_STORAGE)
    with pytest.raises(HostConfigError):
        storage_connection_string("Nope", {})
