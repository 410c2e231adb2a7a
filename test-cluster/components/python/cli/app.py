"""A wasi:cli command for Fabricks' tests: greets, shows its args and env, and on request
exits with a code, traps, spins, sleeps, grows its memory or binds a TCP port."""
import os
import sys
import time

from wit_world import exports
from wit_world.imports import exit as wasi_exit
from wit_world.imports import instance_network, stdin, tcp_create_socket
from wit_world.imports.network import IpAddressFamily, IpSocketAddress_Ipv4, Ipv4SocketAddress


class Run(exports.Run):
    def run(self) -> None:
        args = sys.argv[1:]
        print("hello from componentize-py")
        print("args:", " ".join(args))
        print("env FABRICKS_TEST:", os.environ.get("FABRICKS_TEST", "<unset>"))
        sys.stdout.flush()
        if args:
            VERBS[args[0]](*args[1:])


def exit_with(code: str) -> None:
    wasi_exit.exit_with_code(int(code))


def trap() -> None:
    # Dropping a resource whose child is still alive is a trap in every WASI 0.2 host.
    stream = stdin.get_stdin()
    pollable = stream.subscribe()
    stream.__exit__(None, None, None)
    print("not reached", pollable)


def spin() -> None:
    while True:
        pass


def sleep(seconds: str) -> None:
    time.sleep(float(seconds))


def grow() -> None:
    hoard = []
    while True:
        hoard.append(bytearray(1 << 20))


def listdir(path: str) -> None:
    print("ls:", " ".join(sorted(os.listdir(path))))


def bind(port: str) -> None:
    """Binds and listens on 0.0.0.0:PORT through wasi:sockets, then sleeps (so a test can
    connect), or reports the error and exits 3."""
    sock = tcp_create_socket.create_tcp_socket(IpAddressFamily.IPV4)
    address = IpSocketAddress_Ipv4(Ipv4SocketAddress(port=int(port), address=(0, 0, 0, 0)))
    try:
        sock.start_bind(instance_network.instance_network(), address)
        sock.finish_bind()
        sock.start_listen()
        sock.finish_listen()
    except Exception as e:
        print(f"bind {port} failed: {e!r}", file=sys.stderr)
        sys.stderr.flush()
        wasi_exit.exit_with_code(3)
    print(f"listening on {port}")
    sys.stdout.flush()
    time.sleep(3600)


VERBS = {"exit": exit_with, "trap": trap, "spin": spin, "sleep": sleep, "grow": grow, "ls": listdir, "bind": bind}
