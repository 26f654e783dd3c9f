"""A loopback TCP proxy that spoils a Modbus TCP link on a schedule, for the link-fault tests.

``LinkFaultProxy(upstream_port, schedule)`` listens on 127.0.0.1 and forwards each Modbus TCP
request (one MBAP frame) to the server at ``upstream_port``. For each request it takes the next
action from ``schedule`` (then ``pass`` once the schedule is used up):

``pass``     forward the request and the reply
``reset``    abort the client's connection with a TCP RST (the client sees ECONNRESET)
``stall``    forward nothing and answer nothing: the client's timeout fires
``garble``   forward the request, flip bits in the reply's function code and data
``close``    close the client's connection cleanly (FIN) without answering

Requests and actions taken are counted in ``actions``. The proxy runs in one thread per
connection; ``close()`` stops them all.
"""

from __future__ import annotations

import socket
import struct
import threading

HOST = "127.0.0.1"
ACTIONS = ("pass", "reset", "stall", "garble", "close")


def read_frame(sock: socket.socket) -> bytes:
    """Return one Modbus TCP frame (MBAP header and PDU) from ``sock``, or b'' at end of stream."""
    header = read_exactly(sock, 6)
    if len(header) < 6:
        return b""
    (length,) = struct.unpack(">H", header[4:6])
    body = read_exactly(sock, length)
    return header + body if len(body) == length else b""


def read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        try:
            chunk = sock.recv(count - len(data))
        except OSError:
            return b""
        if not chunk:
            return b""
        data += chunk
    return data


def garbled(frame: bytes) -> bytes:
    """Return ``frame`` with its function code and data bits flipped (the MBAP header kept)."""
    return frame[:7] + bytes(byte ^ 0x5A for byte in frame[7:])


class LinkFaultProxy:
    """A Modbus TCP proxy on loopback spoiling requests as ``schedule`` says (see the module)."""

    def __init__(self, upstream_port: int, schedule: list[str]):
        unknown = set(schedule) - set(ACTIONS)
        if unknown:
            raise ValueError(f"unknown proxy actions {sorted(unknown)}; use {ACTIONS}")
        self.upstream_port, self.schedule = upstream_port, list(schedule)
        self.actions: list[str] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self._connections: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, name="link-fault-proxy", daemon=True)]
        self._threads[0].start()

    @property
    def address(self) -> str:
        """Get the proxy's URL for a ModbusLink."""
        return f"tcp://{HOST}:{self.port}"

    def close(self) -> None:
        """Stop accepting, drop every connection and wait for the threads."""
        # close() alone does not wake a thread blocked in accept() or recv(); shutdown() does.
        for sock in [self._listener, *self._connections]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its thread
        self._listener.close()
        for thread in self._threads:
            thread.join(5.0)

    def __enter__(self) -> "LinkFaultProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _next_action(self) -> str:
        with self._lock:
            action = self.schedule.pop(0) if self.schedule else "pass"
            self.actions.append(action)
            return action

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection((HOST, self.upstream_port))
            with self._lock:
                self._connections += [client, upstream]
            thread = threading.Thread(target=self._serve, args=(client, upstream), name="link-fault-proxy", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while (request := read_frame(client)):
                if not self._act(self._next_action(), request, client, upstream):
                    return
        finally:
            client.close()
            upstream.close()

    def _act(self, action: str, request: bytes, client: socket.socket, upstream: socket.socket) -> bool:
        """Do ``action`` with one request; return whether the connection stays open."""
        if action == "reset":  # linger 0: close() sends RST instead of FIN
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if action == "close":
            return False
        if action == "stall":
            return True
        upstream.sendall(request)
        reply = read_frame(upstream)
        try:
            client.sendall(garbled(reply) if action == "garble" else reply)
        except OSError:
            return False
        return True
