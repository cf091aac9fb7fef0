"""Start Azurite (the Azure Storage emulator) from npm, or use one the user brings.

Order of preference for tests: `AZURITE_CONNECTION_STRING` when set; testcontainers'
`AzuriteContainer` when a Docker engine answers; otherwise the npm package pinned in
package.json, on free ports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from localdev.funchost.process import free_port, own_session

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented; not a secret).
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@dataclass
class Azurite:
    """A reachable Azurite: its connection string and endpoints, and how to stop it."""

    connection_string: str
    process: subprocess.Popen[bytes] | None = None
    container: object | None = None
    endpoints: dict[str, str] = field(default_factory=dict)

    @property
    def blob_endpoint(self) -> str:
        """Blob service URL."""
        return self.endpoints.get("BlobEndpoint", "")

    @property
    def queue_endpoint(self) -> str:
        """Queue service URL."""
        return self.endpoints.get("QueueEndpoint", "")

    @property
    def table_endpoint(self) -> str:
        """Table service URL."""
        return self.endpoints.get("TableEndpoint", "")

    def stop(self) -> None:
        """Stop what we started (nothing when the user brought their own)."""
        if self.process is not None and self.process.poll() is None:
            # An idle Azurite may ignore SIGTERM; its data is flushed on each write, so a short
            # grace period and then SIGKILL loses nothing.
            self.process.terminate()
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.container is not None:
            self.container.stop()  # type: ignore[attr-defined]


def connection_string(blob: int, queue: int, table: int, host: str = "127.0.0.1") -> str:
    """The Azurite connection string for the given ports."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://{host}:{blob}/{ACCOUNT};"
        f"QueueEndpoint=http://{host}:{queue}/{ACCOUNT};"
        f"TableEndpoint=http://{host}:{table}/{ACCOUNT};"
    )


def _endpoints(conn: str) -> dict[str, str]:
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    return {k: v for k, v in parts.items() if k.endswith("Endpoint")}


def _wait_for_ports(ports: list[int], proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if proc.poll() is not None:
            raise RuntimeError(f"Azurite exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", pending[0]), 0.5):
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"Azurite did not listen on {ports} within {timeout}s")
        time.sleep(0.1)


def azurite_binary() -> Path:
    """The npm-installed Azurite launcher (run `npm ci` first)."""
    path = ROOT / "node_modules" / ".bin" / "azurite"
    if not path.exists():
        raise FileNotFoundError("Azurite is not installed: run `npm ci` (the Makefile does)")
    return path


def start_npm(
    location: Path,
    *,
    ports: tuple[int, int, int] | None = None,
    log: Path | None = None,
    timeout: float = 30.0,
    in_memory: bool = False,
) -> Azurite:
    """Start Azurite from node_modules with data in `location` (free ports unless given).

    `in_memory` keeps the data in memory only (`--inMemoryPersistence`): nothing is written to
    disk, and the table store is not re-serialised to disk every five seconds, whose cost grows
    with the data held. Tests and benches use it; `make run` keeps its data on disk."""
    blob, queue, table = ports or (free_port(), free_port(), free_port())
    location.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [
            str(azurite_binary()),
            *(["--inMemoryPersistence"] if in_memory else ["--location", str(location)]),
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(blob),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(queue),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(table),
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        **own_session(),
    )
    try:
        _wait_for_ports([blob, queue, table], proc, timeout)
    except BaseException:
        proc.kill()
        raise
    conn = connection_string(blob, queue, table)
    return Azurite(conn, process=proc, endpoints=_endpoints(conn))


def _docker_available() -> bool:
    if shutil.which("docker") is None and not os.environ.get("DOCKER_HOST"):
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def start_container() -> Azurite:
    """Start testcontainers' AzuriteContainer (needs a Docker engine)."""
    from testcontainers.azurite import AzuriteContainer  # type: ignore[import-untyped]

    container = AzuriteContainer().start()
    conn = container.get_connection_string()
    return Azurite(conn, container=container, endpoints=_endpoints(conn))


def for_tests(tmp: Path) -> Azurite:
    """An Azurite for a test session: the user's, a container, or npm on free ports."""
    given = os.environ.get("AZURITE_CONNECTION_STRING")
    if given:
        return Azurite(given, endpoints=_endpoints(given))
    if os.environ.get("AZURITE_USE_DOCKER", "auto") != "never" and _docker_available():
        return start_container()
    return start_npm(tmp / "azurite", log=tmp / "azurite.log", in_memory=True)


@contextlib.contextmanager
def running(tmp: Path) -> Iterator[Azurite]:
    """Context manager around `for_tests`."""
    az = for_tests(tmp)
    try:
        yield az
    finally:
        az.stop()
