"""nats-server processes for the NATS mode tests: one server, or a cluster of three.

Each server listens on a free loopback port, with a monitoring port the fixtures poll to know
it is ready (and, for a cluster, that its routes to the others are up). Servers are stopped by
their PID (terminate, then kill), never by name.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


def nats_server_binary() -> str | None:
    """The nats-server executable, or None (Debian puts it in /usr/sbin)."""
    return shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class NatsServer:
    """One nats-server process: its client port, monitoring port and cluster port."""

    name: str
    log: Path
    port: int = field(default_factory=free_port)
    monitor: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self, routes: list[str] | None = None) -> None:
        binary = nats_server_binary()
        assert binary is not None, "nats-server is not installed"
        argv = [
            binary,
            "-n",
            self.name,
            "-a",
            LOOPBACK,
            "-p",
            str(self.port),
            "-m",
            str(self.monitor),
            *self.extra,
        ]
        if routes is not None:
            argv += [
                "--cluster_name",
                "daffi-test",
                "--cluster",
                f"nats://{LOOPBACK}:{self.cluster_port}",
                "--routes",
                ",".join(routes),
            ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)

    def varz(self, what: str = "varz") -> dict[str, object]:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{self.monitor}/{what}", timeout=1) as r:
            data: dict[str, object] = json.loads(r.read())
            return data

    def wait_ready(self, routes: int = 0, timeout: float = 10.0) -> None:
        """Until the server answers on its monitoring port with ``routes`` routes up."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"nats-server {self.name} exited: {self.log.read_text()}")
            try:
                if int(str(self.varz("routez").get("num_routes", 0))) >= routes:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"nats-server {self.name} not ready: {self.log.read_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Terminate the process by its PID (kill it if it lingers)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def kill(self) -> None:
        """SIGKILL by PID: the server vanishes without a goodbye."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(5)


@dataclass
class Cluster:
    """Three nats-servers with routes between them (a full mesh)."""

    servers: list[NatsServer]

    @property
    def address(self) -> str:
        """The daffi address naming every server."""
        return "nats://" + ",".join(server.url for server in self.servers)

    def address_of(self, *names: str) -> str:
        """The daffi address naming only the servers ``names`` (a node joins there)."""
        return "nats://" + ",".join(s.url for s in self.servers if s.name in names)

    def server(self, name: str) -> NatsServer:
        return next(s for s in self.servers if s.name == name)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


#: attempts at starting a server or a cluster: a port free_port() chose a moment ago can be
#: taken (as some connection's source port, say) before nats-server binds it; the server then
#: exits at once, and another attempt, with other ports, starts it
START_ATTEMPTS = 3


def wait_all_ready(servers: list[NatsServer], routes: int, timeout: float = 10.0) -> bool:
    """Until every server answers with ``routes`` routes up: True; False as soon as one of
    them has exited (it could not bind a port). Raises at the deadline."""
    deadline = time.monotonic() + timeout
    pending = list(servers)
    while pending:
        for server in list(pending):
            assert server.process is not None
            if server.process.poll() is not None:
                return False
            try:
                if int(str(server.varz("routez").get("num_routes", 0))) >= routes:
                    pending.remove(server)
            except OSError:
                pass
        if pending and time.monotonic() > deadline:
            logs = "\n".join(f"{s.name}: {s.log.read_text()}" for s in pending)
            raise AssertionError(f"nats-servers not ready:\n{logs}")
        if pending:
            time.sleep(0.02)
    return True


def start_server(log_dir: Path, name: str = "solo", extra: list[str] | None = None) -> NatsServer:
    for _ in range(START_ATTEMPTS):
        server = NatsServer(name, log_dir / f"nats-{name}.log", extra=list(extra or []))
        server.start()
        try:
            if wait_all_ready([server], routes=0):
                return server
        except BaseException:
            server.stop()
            raise
        server.stop()
    raise AssertionError(f"nats-server {name} did not start: {server.log.read_text()}")


def start_cluster(log_dir: Path) -> Cluster:
    for _ in range(START_ATTEMPTS):
        servers = [NatsServer(name, log_dir / f"nats-{name}.log") for name in ("A", "B", "C")]
        cluster = Cluster(servers)
        try:
            for server in servers:
                server.start(
                    [f"nats://{LOOPBACK}:{o.cluster_port}" for o in servers if o is not server]
                )
            if wait_all_ready(servers, routes=2):
                return cluster
        except BaseException:
            cluster.stop()
            raise
        cluster.stop()
    logs = "\n".join(f"{s.name}: {s.log.read_text()}" for s in cluster.servers)
    raise AssertionError(f"the cluster did not start:\n{logs}")
