"""ZeroMQ socket security for engines on other machines: CurveZMQ keys made per application.

Between machines every socket of an app is CURVE-encrypted and authenticated. The
driver's ROUTER and each engine's data PULL are CURVE servers; the engines' DEALERs
(control, watchdog) and data PUSHes are CURVE clients. One server key pair and one
client key pair are made per application (``zmq.curve_keypair``); every process that
binds runs a ZAP authenticator admitting only the app's client key, so a connection
with another key, or with none, never completes its handshake: nothing in, nothing
out (and pickled code is only ever accepted from an authenticated peer).

On one machine (ipc:// in an owner-only directory) no keys are made: ``keys`` is None
and every function here does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import zmq

ZAP_DOMAIN = "wallaroo_nb"


@dataclass(frozen=True)
class Keys:
    """One application's key pairs (z85 bytes, as zmq.curve_keypair makes them)."""

    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes

    def to_line(self) -> bytes:
        """One line for an engine's stdin (never its command line: ``ps`` shows that)."""
        return b" ".join((self.server_public, self.server_secret, self.client_public,
                          self.client_secret)) + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> "Keys":
        parts = line.split()
        if len(parts) != 4 or any(len(p) != 40 for p in parts):
            raise ValueError("expected four z85 CurveZMQ keys of 40 characters on one line")
        return cls(*parts)

    def __repr__(self) -> str:  # secrets stay out of logs and tracebacks
        return f"Keys(server_public={self.server_public!r}, client_public={self.client_public!r})"


def new_keys() -> Keys:
    """Fresh key pairs for one application."""
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    return Keys(server_public, server_secret, client_public, client_secret)


def server(sock: zmq.Socket, keys: Optional[Keys]) -> None:
    """Make ``sock`` (before it binds) a CURVE server checked by the ZAP authenticator."""
    if keys is None:
        return
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server_secret)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.server_public)
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())


def client(sock: zmq.Socket, keys: Optional[Keys]) -> None:
    """Make ``sock`` (before it connects) a CURVE client with the app's client key."""
    if keys is None:
        return
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.client_public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.client_secret)


class _AppKeyOnly:
    """pyzmq's credentials provider: admits the app's client public key, nothing else."""

    def __init__(self, client_public: bytes):
        self.client_public = client_public

    def callback(self, domain: str, key: bytes) -> bool:
        return key == self.client_public


def authenticator(ctx: zmq.Context, keys: Optional[Keys]) -> Optional[object]:
    """Start the ZAP handler of ``ctx`` (before any server socket of it binds); None
    without keys. Stop it with ``stop`` before the context is destroyed."""
    if keys is None:
        return None
    from zmq.auth.thread import ThreadAuthenticator

    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=_AppKeyOnly(
        keys.client_public))
    return auth


def stop(auth: Optional[object]) -> None:
    if auth is not None:
        auth.stop()
