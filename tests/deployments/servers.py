"""Redis deployments for the tests, from real processes: TLS with certificates made here by
the ``openssl`` command, ACL users, unix sockets, and a Sentinel-managed primary with a
replica and three sentinels.

Every process listens on 127.0.0.1 on a free port, keeps nothing on disk but its own
temporary directory, and is killed when its ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from ..redis_server import free_port, redis_program

SERVICE = "mymaster"
_DATA_NODE = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", "."]
_DATA_NODE += ["--repl-diskless-sync-delay", "0"]  # a replica syncs at once, not after 5 s


def _wait(ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if ready():
                return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.02)  # polling a server's start-up, with a deadline


class Server:
    """One ``redis-server`` process in ``directory``: a data node, or a sentinel when its
    arguments are a sentinel config file and ``--sentinel``."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self.port = free_port()
        self.arguments: list[str] = ["--port", str(self.port)]
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def start(self, client_options: dict[str, Any] | None = None) -> Server:
        """Start and wait until a client with ``client_options`` gets a PONG."""
        log = open(self.directory / f"{self.name}.log", "ab")  # noqa: SIM115 (the process's)
        data_node = "--sentinel" not in self.arguments
        self.process = subprocess.Popen(
            [redis_program(), *self.arguments, *(_DATA_NODE if data_node else [])],
            cwd=self.directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        options = client_options or {"host": "127.0.0.1", "port": self.port}
        with redis.Redis(**options) as client:
            _wait(lambda: bool(client.ping()), self.process, f"{self.name} on {self.port}")
        return self

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to clients or replicas."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


# -- TLS ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """A self-signed CA, and a server and a client certificate it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(directory: Path, *arguments: str) -> None:
    subprocess.run(["openssl", *arguments], cwd=directory, check=True, capture_output=True)


def make_certificates(directory: Path) -> Certificates:
    """Certificates for ``localhost`` and 127.0.0.1, valid for a day, by the openssl CLI."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(directory, "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "1", "-subj", "/CN=aiorq test CA")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl(directory, "req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}")  # fmt: skip
        _openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt",
                 "-CAkey", "ca.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", "1",
                 "-extfile", "san.ext")  # fmt: skip
    return Certificates(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )


class NoTLS(RuntimeError):
    """This ``redis-server`` was built without TLS."""


def tls_server(directory: Path, certificates: Certificates) -> Server:
    """A server that speaks only TLS and wants a client certificate signed by the CA.

    Raises ``NoTLS`` if the ``redis-server`` on PATH was built without TLS.
    """
    server = Server(directory, name="tls")
    server.arguments = [
        "--port", "0",
        "--tls-port", str(server.port),
        "--tls-cert-file", str(certificates.server_cert),
        "--tls-key-file", str(certificates.server_key),
        "--tls-ca-cert-file", str(certificates.ca),
        "--tls-auth-clients", "yes",
    ]  # fmt: skip
    try:
        return server.start(_tls_client(server.port, certificates))
    except RuntimeError:
        log = (directory / "tls.log").read_text()
        if "TLS support" in log or "'tls-port" in log:  # 7.x, or 6.2: "Bad directive"
            raise NoTLS(f"{redis_program()} has no TLS support") from None
        raise


def _tls_client(port: int, certificates: Certificates) -> dict[str, Any]:
    return {
        "host": "localhost",
        "port": port,
        "ssl": True,
        "ssl_ca_certs": str(certificates.ca),
        "ssl_certfile": str(certificates.client_cert),
        "ssl_keyfile": str(certificates.client_key),
    }


# -- Sentinel ------------------------------------------------------------------------------------


class SentinelSetup:
    """One primary, one replica, three sentinels that monitor the primary as ``SERVICE``.

    Sentinels call a primary down after 1 s without an answer (the default is 30 s) and
    two of them must agree. The first primary takes writes only while its replica is
    connected (``min-replicas-to-write 1``), as Redis's Sentinel guide advises against
    losing writes: after ``SENTINEL FAILOVER`` the old primary stays a primary until the
    sentinels demote it seconds later, and whatever it took meanwhile would be lost. (With
    one replica only the first primary can have it: the promoted one has no replica left
    after a kill.)
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.nodes: list[Server] = []
        self.sentinels: list[Server] = []

    def start(self) -> SentinelSetup:
        primary = Server(self.directory / "node-a", name="node-a")
        primary.arguments += ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "10"]
        primary.start()
        replica = Server(self.directory / "node-b", name="node-b")
        replica.arguments += ["--replicaof", "127.0.0.1", str(primary.port)]
        replica.start()
        self.nodes = [primary, replica]
        with replica.client() as client:
            _wait(lambda: _linked(client), replica.process, "replication")  # type: ignore[arg-type]
        with primary.client() as client:  # it counts the replica once it has acknowledged
            _wait(lambda: bool(client.set("ready", 1)), primary.process, "writes")  # type: ignore[arg-type]
        ids = [secrets.token_hex(20) for _ in range(3)]
        ports = [free_port() for _ in range(3)]
        for index in range(3):
            self.sentinels.append(self._sentinel(index, ids, ports, replica.port))
        _wait(self._settled, self.sentinels[0].process, "the sentinels")  # type: ignore[arg-type]
        return self

    def _sentinel(self, index: int, ids: list[str], ports: list[int], replica: int) -> Server:
        """Sentinel ``index``, told its peers and the replica up front (they would find
        each other within seconds; the tests need not wait)."""
        directory = self.directory / f"sentinel-{index}"
        sentinel = Server(directory, name=f"sentinel-{index}")
        sentinel.port = ports[index]
        peers = "".join(
            f"sentinel known-sentinel {SERVICE} 127.0.0.1 {port} {peer}\n"
            for i, (port, peer) in enumerate(zip(ports, ids, strict=True))
            if i != index
        )
        (directory / "sentinel.conf").write_text(
            f"port {sentinel.port}\n"
            "bind 127.0.0.1\n"
            f"sentinel myid {ids[index]}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.nodes[0].port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
            f"sentinel known-replica {SERVICE} 127.0.0.1 {replica}\n"
            f"{peers}"
        )
        sentinel.arguments = [str(directory / "sentinel.conf"), "--sentinel"]
        return sentinel.start()

    def _settled(self) -> bool:
        """Every sentinel knows the replica and the two other sentinels."""
        for sentinel in self.sentinels:
            with sentinel.client(decode_responses=True) as client:
                state = client.sentinel_master(SERVICE)
                if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                    return False
        return True

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", sentinel.port) for sentinel in self.sentinels]

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"{host}:{port}" for host, port in self.addresses)
        return f"redis+sentinel://{hosts}/{SERVICE}/{db}"

    def primary_port(self) -> int:
        """The primary's port as the sentinels report it now."""
        for sentinel in self.sentinels:
            if sentinel.process is None:
                continue
            with (
                sentinel.client(decode_responses=True) as client,
                contextlib.suppress(redis.RedisError),
            ):
                return int(client.sentinel_get_master_addr_by_name(SERVICE)[1])
        raise RuntimeError("no sentinel answers")

    def node(self, port: int) -> Server:
        return next(node for node in self.nodes if node.port == port)

    def failover(self) -> None:
        """``SENTINEL FAILOVER``: the replica is promoted, the primary demoted."""
        with self.sentinels[0].client() as client:
            client.execute_command("SENTINEL", "FAILOVER", SERVICE)

    def wait_for_primary(self, other_than: int, timeout: float = 30) -> int:
        """The new primary's port, once the sentinels report one other than ``other_than``
        and it says it is a primary."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, RuntimeError):
                port = self.primary_port()
                if port != other_than:
                    with self.node(port).client(decode_responses=True) as client:
                        if client.info("replication")["role"] == "master":
                            return port
            time.sleep(0.02)
        raise AssertionError(f"no failover away from port {other_than} within {timeout:g}s")

    def __enter__(self) -> SentinelSetup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for server in [*self.sentinels, *self.nodes]:
            server.kill()


def _linked(client: redis.Redis) -> bool:
    info: dict[str, Any] = client.info("replication")
    return info.get("master_link_status") == "up"
