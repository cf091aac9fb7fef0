"""Run `python -m localdev.host` as a child process and wait until it answers (tests, scripts)."""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux), whatever kills it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def own_session() -> dict[str, Any]:
    """Popen arguments for a child out of reach of signals to our process group.

    A terminal's Ctrl-C, a closed terminal, `timeout` or a supervisor signal the whole group;
    the parent decides how its children stop. On Linux the child still gets SIGTERM if the
    parent dies without stopping it (SIGKILL).
    """
    kw: dict[str, Any] = {"start_new_session": True}
    if sys.platform.startswith("linux"):
        kw["preexec_fn"] = _die_with_parent
    return kw


class HostProcess:
    """The host in a subprocess: start() waits for /admin/host/status, stop() sends SIGTERM."""

    def __init__(
        self,
        app: str = "function_app:app",
        *,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        host_json: str | Path | None = None,
        settings: str | Path | None = None,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        log_path: str | Path | None = None,
    ) -> None:
        # `env` is the child's whole environment (default: a copy of this process's).
        self.app = app
        self.cwd = Path(cwd) if cwd else Path.cwd()
        self.env = dict(os.environ if env is None else env)
        self.host_json = host_json
        self.settings = settings
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(suffix=".log")[1])
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """Where the host listens."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The command line the child runs."""
        args = [sys.executable, "-m", "localdev.host", "--app", self.app, "--port", str(self.port)]
        if self.host_json is not None:
            args += ["--host-json", str(self.host_json)]
        if self.settings is not None:
            args += ["--settings", str(self.settings)]
        return args + self.extra_args

    def logs(self) -> str:
        """Everything the child has logged so far."""
        return (
            self.log_path.read_text(encoding="utf-8", errors="replace")
            if self.log_path.exists()
            else ""
        )

    def start(self, timeout: float = 30.0) -> HostProcess:
        """Start the child and block until it answers, or raise with its log."""
        self._log = self.log_path.open("wb")
        env = {**self.env, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            **own_session(),  # stopped by stop(), not by a Ctrl-C meant for the caller
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"host exited with {self.process.returncode} before answering:\n{self.logs()}"
                )
            if self.is_running():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"host did not answer within {timeout}s:\n{self.logs()}")

    def is_running(self) -> bool:
        """Whether GET /admin/host/status answers Running (a host dying mid-answer is not)."""
        if self.process is not None and self.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{self.base_url}/admin/host/status", timeout=1) as reply:
                return bool(json.loads(reply.read()).get("state") == "Running")
        except (OSError, http.client.HTTPException, ValueError):
            return False

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request to the host: (status, lower-cased headers, body); 4xx/5xx are returned."""
        req = urllib.request.Request(
            self.base_url + path, data=body, method=method, headers=dict(headers or {})
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as reply:
                return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for a clean exit (then kill); returns the exit code."""
        code = 0
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
        elif self.process is not None:
            code = self.process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> HostProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
