"""ZeroMQ CURVE keys: generate key pairs, load key files, and secure sockets with them.

Why: actors usually reach the learner over a lab network; with CURVE the traffic
is encrypted and, given a directory of authorised actor public keys, only those
actors can connect. Key files are the standard ZeroMQ certificate files written
by `zmq.auth` (`NAME.key` public, `NAME.key_secret` public + secret); secret
files are created readable by their owner only (0600).

Revocation: the authorised directory is re-read at most every RELOAD_S seconds
whenever a key is checked (each new connection, and each request the learner
serves), so deleting an actor's NAME.key refuses its new connections and the
requests and params of its open ones within seconds, without a restart.

Command line:  python -m serl_launcher.transport.keys DIR NAME [NAME ...]
"""

import argparse
import logging
import os
import shutil
import stat
import tempfile
import threading
import time

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

logger = logging.getLogger(__name__)
RELOAD_S = 2.0


def generate(directory: str, name: str) -> tuple:
    """Write NAME.key and NAME.key_secret (mode 0600) in directory (created if needed); return their paths.

    zmq.auth writes with the process umask (often 0644), so the pair is written in a
    private (0700) temporary directory, the secret file made 0600, then both moved in.
    """
    os.makedirs(directory, exist_ok=True)
    staging = tempfile.mkdtemp(dir=directory, prefix=".keys-")
    try:
        made = zmq.auth.create_certificates(staging, name)
        os.chmod(made[1], 0o600)
        paths = tuple(os.path.join(directory, os.path.basename(path)) for path in made)
        for source, target in zip(made, paths):
            os.replace(source, target)
        return paths
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_key_pair(path: str) -> tuple:
    """(public, secret) from a NAME.key_secret file; warns if others may read it."""
    public, secret = zmq.auth.load_certificate(path)
    if secret is None:
        raise ValueError(f"{path} holds no secret key: pass the .key_secret file")
    if os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("secret key file %s is readable by other users: chmod 600 it", path)
    return public, secret


def load_public_key(path: str) -> bytes:
    """The public key from a NAME.key (or NAME.key_secret) file."""
    return zmq.auth.load_certificate(path)[0]


def secure_server(sock: zmq.Socket, key_pair: tuple) -> None:
    """Make a bound socket a CURVE server (before bind)."""
    sock.curve_publickey, sock.curve_secretkey = key_pair
    sock.curve_server = True


def secure_client(sock: zmq.Socket, server_public: bytes, key_pair: tuple) -> None:
    """Make a connecting socket a CURVE client of server_public (before connect)."""
    sock.curve_serverkey = server_public
    sock.curve_publickey, sock.curve_secretkey = key_pair


class Authorizer:
    """Admits CURVE clients whose public key file (NAME.key) is in `directory`, re-read every RELOAD_S.

    Serves the context's ZAP requests (new connections) through a ThreadAuthenticator,
    and `allows(user_id)` answers for connections already open: ZeroMQ tags each
    message from a CURVE client with its key as "User-Id". An unreadable directory
    admits nobody (fail closed).
    """

    def __init__(self, ctx: zmq.Context, directory: str):
        if not os.path.isdir(directory):
            raise ValueError(f"curve_authorized_clients={directory!r} is not a directory")
        self._directory = directory
        self._lock = threading.Lock()
        self._allowed = frozenset()
        self._next_reload = 0.0
        self._refresh()
        self._auth = ThreadAuthenticator(ctx, log=logger)
        self._auth.start()
        self._auth.configure_curve_callback(domain="*", credentials_provider=self)

    def allows(self, user_id) -> bool:
        """Whether the client with this User-Id (z85 public key) is authorised now."""
        self._refresh()
        return user_id in self._allowed

    def callback(self, domain: str, key: bytes) -> bool:
        """ZAP hook (zmq.auth credentials provider): `key` is the z85 public key of a connecting client."""
        return self.allows(key.decode("ascii"))

    def stop(self) -> None:
        self._auth.stop()

    def _refresh(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next_reload:
                return
            self._next_reload = now + RELOAD_S
            try:
                allowed = frozenset(key.decode("ascii") for key in zmq.auth.load_certificates(self._directory))
            except Exception as exc:  # missing directory, unreadable or malformed key file
                logger.error("cannot read authorised actor keys in %s (admitting nobody): %s", self._directory, exc)
                allowed = frozenset()
            if allowed != self._allowed:
                logger.info(
                    "authorised actor keys in %s: %d (%d added, %d revoked)",
                    self._directory,
                    len(allowed),
                    len(allowed - self._allowed),
                    len(self._allowed - allowed),
                )
            self._allowed = allowed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Generate ZeroMQ CURVE key pairs for the learner/actor transport.")
    parser.add_argument("directory", help="where to write NAME.key (public) and NAME.key_secret (keep private)")
    parser.add_argument("names", nargs="+", help="one key pair per name, e.g. learner actor1")
    args = parser.parse_args(argv)
    for name in args.names:
        public_path, secret_path = generate(args.directory, name)
        print(f"{name}: public {public_path}  secret {secret_path}")


if __name__ == "__main__":
    main()
