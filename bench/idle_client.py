#!/usr/bin/env python3
"""bench/idle_client.py: many idle keep-alive connections, held open while bench.sh reads memory.

    bench/idle_client.py --port N [--connections 10000] [--concurrency 100] [--seconds 40]

Opens --connections connections to 127.0.0.1:N, at most --concurrency at a time still
connecting or waiting for their answer. Each sends one GET, reads the whole response (a 200
with a Content-Length), and then stays open and silent. Once every connection is answered or
failed, or --seconds have passed, it prints one line and waits:

    held H failed F seconds S

When a line or the end of stdin arrives, it checks which of the held connections the server
has closed meanwhile (readable: an end of file or unasked-for bytes), prints

    open O

closes them all and exits: 0 if every connection was held and still open, 1 otherwise.
It is not a load generator: one request per connection, loopback only. wrk cannot do this, as
it sends a new request as soon as a response arrives.
"""
import argparse
import resource
import select
import selectors
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
EXCHANGE_SECONDS = 10  # one connection, from connect() to the end of its response


def parse_options():
    parser = argparse.ArgumentParser(description="hold idle keep-alive connections open")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=40)
    return parser.parse_args()


def raise_open_files_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def response_complete(data):
    """True once data holds a whole 200 response; False while incomplete; None if not a 200."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    head = data[:head_end].decode("latin-1")
    if not head.startswith("HTTP/1.1 200 "):
        return None
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return len(data) - head_end - 4 >= int(value.strip())
    return None  # no Content-Length: the end of the response would be the server's close


class Exchange:
    """One connection on its way to being held: connecting, then reading its response."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.deadline = time.monotonic() + EXCHANGE_SECONDS
        self.sent = False
        self.data = b""
        self.sock.connect_ex(("127.0.0.1", port))


def open_connections(options):
    """Returns the held sockets and how many failed."""
    selector = selectors.DefaultSelector()
    held, failed, started = [], 0, 0
    in_flight = set()
    give_up = time.monotonic() + options.seconds

    def finish(exchange, ok):
        nonlocal failed
        selector.unregister(exchange.sock)
        in_flight.discard(exchange)
        if ok:
            held.append(exchange.sock)
        else:
            exchange.sock.close()
            failed += 1

    while time.monotonic() < give_up:
        while started < options.connections and len(in_flight) < options.concurrency:
            exchange = Exchange(options.port)
            selector.register(exchange.sock, selectors.EVENT_WRITE, exchange)
            in_flight.add(exchange)
            started += 1
        if not in_flight:
            break
        for key, _ in selector.select(timeout=0.1):
            exchange = key.data
            try:
                if not exchange.sent:
                    error = exchange.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if error:
                        finish(exchange, False)
                        continue
                    exchange.sock.sendall(REQUEST)  # 37 bytes: fits an empty socket buffer
                    exchange.sent = True
                    selector.modify(exchange.sock, selectors.EVENT_READ, exchange)
                    continue
                chunk = exchange.sock.recv(4096)
            except OSError:
                finish(exchange, False)
                continue
            if not chunk:
                finish(exchange, False)  # closed before the whole response
                continue
            exchange.data += chunk
            complete = response_complete(exchange.data)
            if complete is not False:
                finish(exchange, complete is True)
        now = time.monotonic()
        for exchange in [e for e in in_flight if now > e.deadline]:
            finish(exchange, False)
    for exchange in list(in_flight):
        finish(exchange, False)
    failed += options.connections - started  # never started: --seconds ran out
    return held, failed


def still_open(held):
    """How many held connections the server has not closed (nothing readable on them)."""
    poller = select.poll()
    for sock in held:
        poller.register(sock, select.POLLIN)
    closed = {fd for fd, _ in poller.poll(0)}
    return sum(1 for sock in held if sock.fileno() not in closed)


def main():
    options = parse_options()
    raise_open_files_limit(options.connections + 64)
    start = time.monotonic()
    held, failed = open_connections(options)
    print(f"held {len(held)} failed {failed} seconds {time.monotonic() - start:.1f}", flush=True)
    sys.stdin.readline()  # bench.sh reads the server's memory meanwhile
    open_count = still_open(held)
    print(f"open {open_count}", flush=True)
    for sock in held:
        sock.close()
    return 0 if failed == 0 and open_count == len(held) else 1


if __name__ == "__main__":
    sys.exit(main())
