"""ZeroMQ CURVE keys: generate key pairs, load key files, and secure sockets with them.

Why: actors usually reach the learner over a lab network; with CURVE the traffic
is encrypted and, given a directory of authorised actor public keys, only those
actors can connect. Key files are the standard ZeroMQ certificate files written
by `zmq.auth` (`NAME.key` public, `NAME.key_secret` public + secret).

Command line:  python -m serl_launcher.transport.keys DIR NAME [NAME ...]
"""

import argparse
import logging
import os

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

logger = logging.getLogger(__name__)


def generate(directory: str, name: str) -> tuple:
    """Write NAME.key and NAME.key_secret in directory (created if needed); return their paths."""
    os.makedirs(directory, exist_ok=True)
    return zmq.auth.create_certificates(directory, name)


def load_key_pair(path: str) -> tuple:
    """(public, secret) from a NAME.key_secret file."""
    public, secret = zmq.auth.load_certificate(path)
    if secret is None:
        raise ValueError(f"{path} holds no secret key: pass the .key_secret file")
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


def start_authenticator(ctx: zmq.Context, directory: str) -> ThreadAuthenticator:
    """Accept only CURVE clients whose public key file (NAME.key) is in directory."""
    if not os.path.isdir(directory):
        raise ValueError(f"curve_authorized_clients={directory!r} is not a directory")
    auth = ThreadAuthenticator(ctx, log=logger)
    auth.start()
    auth.configure_curve(domain="*", location=directory)
    return auth


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
