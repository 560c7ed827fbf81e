"""Helpers for the TLS tests: certificates made by trustme (a CA, a server certificate
for 127.0.0.1, a client certificate) and a redis-server that speaks only TLS."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from .redis_helpers import RedisServer

#: An ACL user the TLS servers know besides ``default``, and its password.
ACL_USER, ACL_PASSWORD = "alice", "s3cret-pass"


@dataclass(frozen=True)
class Certificates:
    """PEM files in one directory: a CA, a server certificate and key for
    127.0.0.1, and a client certificate and key, all issued by that CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_certificates(directory: Path) -> Certificates:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    client = ca.issue_cert("client@chanlite.test")
    files = Certificates(*(directory / name for name in ("ca", "sc", "sk", "cc", "ck")))
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    return files


class TLSOnlyRedisServer(RedisServer):
    """A redis-server listening only for TLS on :attr:`port` (``--port 0``), with the
    server certificate and CA of ``certificates`` and the extra redis-server
    ``options``; with ``client_certs`` it refuses clients without a certificate from
    the CA. It counts as started once it answers PING over TLS."""

    def __init__(
        self,
        certificates: Certificates,
        port: int | None = None,
        *options: str,
        client_certs: bool = False,
    ) -> None:
        self.certificates = certificates
        self.client_certs = client_certs
        super().__init__(port)
        self.options = (
            *("--port", "0", "--tls-port", str(self.port)),
            *("--tls-cert-file", str(certificates.server_cert)),
            *("--tls-key-file", str(certificates.server_key)),
            *("--tls-ca-cert-file", str(certificates.ca)),
            *("--tls-auth-clients", "yes" if client_certs else "no"),
            *options,
        )

    def answers(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.certificates.ca))
        if self.client_certs:
            files = self.certificates
            context.load_cert_chain(str(files.client_cert), str(files.client_key))
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
            ):
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class TLSRedisServer(TLSOnlyRedisServer):
    """A redis-server listening only for TLS on :attr:`port`, with the ACL user
    :data:`ACL_USER`; with ``client_certs`` it refuses clients without a certificate
    from the CA."""

    def __init__(self, certificates: Certificates, *, client_certs: bool = False) -> None:
        acl_user = ("--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all")
        super().__init__(certificates, None, *acl_user, client_certs=client_certs)

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.certificates.ca}"
