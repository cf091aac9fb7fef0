"""host.json options, local.settings.json and %Setting% resolution, as the host reads them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

# .NET TimeSpan.Parse's invariant form: [-]d | [-][d.]hh:mm[:ss[.fffffff]]
_TIMESPAN = re.compile(
    r"^\s*(?P<neg>-)?(?:(?P<days>\d+)\.)?(?P<h>\d+):(?P<m>\d+)(?::(?P<s>\d+)(?:\.(?P<f>\d{1,7}))?)?\s*$"
)
_TIMESPAN_DAYS = re.compile(r"^\s*(?P<neg>-)?(?P<days>\d+)\s*$")
_SETTING_REF = re.compile(r"%([^%]+)%")

# Azurite's well-known development account (public, documented by Microsoft).
DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


class HostConfigError(ValueError):
    """host.json, a setting or a binding cannot be used; the real host would refuse to start too."""


def parse_timespan(text: str) -> timedelta:
    """Parse a .NET TimeSpan ("00:00:30", "1.02:00:00", "5" = five days) as host.json uses it."""
    match = _TIMESPAN.match(text)
    if match:
        hours, minutes = int(match["h"]), int(match["m"])
        seconds = int(match["s"] or 0)
        if hours > 23 or minutes > 59 or seconds > 59:
            raise HostConfigError(f"TimeSpan {text!r}: a component is out of range")
        fraction = (match["f"] or "0").ljust(7, "0")
        value = timedelta(
            days=int(match["days"] or 0),
            hours=hours,
            minutes=minutes,
            seconds=seconds,
            microseconds=int(fraction) / 10,
        )
        return -value if match["neg"] else value
    match = _TIMESPAN_DAYS.match(text)
    if match:
        value = timedelta(days=int(match["days"]))
        return -value if match["neg"] else value
    raise HostConfigError(f"{text!r} is not a TimeSpan (expected [d.]hh:mm[:ss[.fffffff]])")


def _section(config: Mapping[str, Any], *path: str) -> Mapping[str, Any]:
    """Walk host.json case-insensitively, as .NET configuration binding does."""
    node: Any = config
    for key in path:
        if not isinstance(node, Mapping):
            return {}
        node = next((v for k, v in node.items() if k.lower() == key.lower()), {})
    return node if isinstance(node, Mapping) else {}


def _get(section: Mapping[str, Any], key: str, default: Any) -> Any:
    return next((v for k, v in section.items() if k.lower() == key.lower()), default)


def _duration(value: Any, what: str) -> timedelta:
    if isinstance(value, int | float):
        # A bare number in host.json is not a TimeSpan; refuse rather than guess the unit.
        raise HostConfigError(f"{what}: expected a TimeSpan string like '00:00:30', got {value!r}")
    return parse_timespan(str(value))


@dataclass(frozen=True)
class QueueOptions:
    """extensions.queues with the Storage extension's defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout: timedelta = timedelta(0)
    max_polling_interval: timedelta = timedelta(minutes=1)
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, host_json: Mapping[str, Any]) -> QueueOptions:
        """Read extensions.queues, validating ranges like the extension does."""
        section = _section(host_json, "extensions", "queues")
        batch_size = int(_get(section, "batchSize", 16))
        if not 1 <= batch_size <= 32:
            raise HostConfigError("extensions.queues.batchSize must be between 1 and 32")
        threshold = int(_get(section, "newBatchThreshold", batch_size // 2))
        max_dequeue = int(_get(section, "maxDequeueCount", 5))
        if max_dequeue < 1:
            raise HostConfigError("extensions.queues.maxDequeueCount must be at least 1")
        visibility = _duration(_get(section, "visibilityTimeout", "00:00:00"), "visibilityTimeout")
        polling = _duration(_get(section, "maxPollingInterval", "00:01:00"), "maxPollingInterval")
        if polling < timedelta(milliseconds=100):
            raise HostConfigError("extensions.queues.maxPollingInterval must be at least 100 ms")
        encoding = str(_get(section, "messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise HostConfigError("extensions.queues.messageEncoding must be 'base64' or 'none'")
        return cls(
            batch_size=batch_size,
            new_batch_threshold=max(threshold, 0),
            max_dequeue_count=max_dequeue,
            visibility_timeout=max(visibility, timedelta(0)),
            max_polling_interval=polling,
            message_encoding=encoding,
        )


@dataclass(frozen=True)
class HostOptions:
    """What this host reads from host.json."""

    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()

    @classmethod
    def from_host_json(cls, host_json: Mapping[str, Any]) -> HostOptions:
        """Read the parts of host.json this host honours."""
        http = _section(host_json, "extensions", "http")
        prefix = str(_get(http, "routePrefix", "api")).strip("/")
        return cls(route_prefix=prefix, queues=QueueOptions.from_host_json(host_json))


def load_host_json(path: str | Path) -> dict[str, Any]:
    """Read host.json; a missing file means all defaults, as for the real host."""
    file = Path(path)
    if not file.exists():
        return {"version": "2.0"}
    data = json.loads(file.read_text(encoding="utf-8-sig"))
    if not isinstance(data, dict):
        raise HostConfigError(f"{file}: expected a JSON object")
    return data


def load_settings(
    path: str | Path, environ: MutableMapping[str, str] | None = None
) -> dict[str, str]:
    """Copy local.settings.json Values into the environment; what is already set wins."""
    env = os.environ if environ is None else environ
    file = Path(path)
    if not file.exists():
        return {}
    data = json.loads(file.read_text(encoding="utf-8-sig"))
    if data.get("IsEncrypted"):
        raise HostConfigError(f"{file}: encrypted settings are not supported locally")
    values = {str(k): "" if v is None else str(v) for k, v in (data.get("Values") or {}).items()}
    for key, value in values.items():
        env.setdefault(key, value)
    return values


def local_http_port(path: str | Path) -> int | None:
    """Host.LocalHttpPort from local.settings.json, which `func start` uses as its default port."""
    file = Path(path)
    if not file.exists():
        return None
    port = (json.loads(file.read_text(encoding="utf-8-sig")).get("Host") or {}).get("LocalHttpPort")
    return int(port) if port else None


def resolve_setting_refs(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace each %Name% in a binding property with that app setting, or fail like indexing."""
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise HostConfigError(f"'%{name}%' does not resolve to a value (app setting missing)")
        return env[name]

    return _SETTING_REF.sub(replace, text)


def storage_connection_string(
    connection: str | None, environ: Mapping[str, str] | None = None
) -> str:
    """The connection string a binding's `connection` names, looked up as the host does."""
    env = os.environ if environ is None else environ
    name = connection or "AzureWebJobsStorage"
    candidates = [f"ConnectionStrings:{name}", name, f"AzureWebJobs{name}"]
    value = next((env[c] for c in candidates if env.get(c)), None)
    if value is None:
        raise HostConfigError(
            f"connection '{name}': no app setting {name} (identity-based connections "
            f"such as {name}__queueServiceUri are not supported by the local host)"
        )
    if value.strip().rstrip(";").lower() == "usedevelopmentstorage=true":
        return DEVELOPMENT_STORAGE
    return value


# A schedule that never fires in practice (midnight on 1 January): tests and benches start a
# host whose timers stay quiet unless the test wants one.
QUIET_SCHEDULE = "0 0 0 1 1 *"


def quiet_timers(example: Path | None = None) -> dict[str, str]:
    """Every `*_SCHEDULE` setting that local.settings.example.json names, set to
    `QUIET_SCHEDULE`: a host for a test or a bench needs each one (an unresolved `%NAME%` stops
    it, as in Azure), and a timer added later is then covered without touching every test.
    Spread it first in an environment so a test's own schedules win."""
    path = example or Path(__file__).resolve().parents[2] / "local.settings.example.json"
    names = json.loads(path.read_text(encoding="utf-8"))["Values"]
    return {name: QUIET_SCHEDULE for name in names if name.endswith("_SCHEDULE")}
