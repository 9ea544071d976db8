"""A real webhook receiver: an HTTP endpoint on 127.0.0.1 in a thread, recording requests."""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records requests and answers as it is told."""

    url: str
    requests: list[Received] = field(default_factory=list)
    answers: queue.SimpleQueue[int] = field(default_factory=queue.SimpleQueue)
    default: int = 200
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, *statuses: int) -> None:
        for status in statuses:
            self.answers.put(status)

    def next_status(self) -> int:
        try:
            return self.answers.get_nowait()
        except queue.Empty:
            return self.default


@contextmanager
def serve() -> Iterator[Receiver]:
    """A receiver listening until the block ends (for fixtures of any scope)."""
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            recv = box[0]
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if recv.delay:
                time.sleep(recv.delay)
            with recv.lock:
                recv.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            status = recv.next_status()
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("location", f"{recv.url}/elsewhere")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        # A web server's listen backlog, not socketserver's 5: the worker keeps up to 64
        # deliveries in flight, and a queue of 5 drops connections on a busy machine.
        request_queue_size = 128

    server = Server(("127.0.0.1", 0), Handler)
    box.append(Receiver(url=f"http://127.0.0.1:{server.server_port}/hooks"))
    # A short poll interval: shutting the server down waits for one poll.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve() as recv:
        yield recv


@dataclass
class Trickler:
    """An endpoint that never finishes its answer: it reads the request, then sends one byte
    of a header every ``gap`` seconds, so no single read ever waits long."""

    url: str
    requests: int = 0


@contextmanager
def trickle(gap: float = 0.3) -> Iterator[Trickler]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    box = Trickler(url=f"http://127.0.0.1:{listener.getsockname()[1]}/hooks")
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not stop.wait(gap):
                    conn.sendall(b"a")
            except OSError:
                return  # the client gave up and closed the connection

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            box.requests += 1
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        stop.set()
        thread.join()
        listener.close()
