"""A TCP relay to the test database that can freeze or cut the link.

Frozen, it keeps the connections open and passes nothing either way: what a client sees of
a stopped server process or a network partition, where the kernel still accepts every
packet. Cut, it closes every relayed connection at once: a broken link.
"""

import contextlib
import socket
import threading
import time


class FreezableRelay:
    """Relay TCP connections to ``target``; ``freeze()`` stops them, ``cut()`` breaks them."""

    def __init__(self, target):
        self.target = target
        self.frozen = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets = []
        self.accepted = 0  # connections relayed so far
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            self.accepted += 1
            for pipe in ((client, server), (server, client)):
                threading.Thread(target=self.pump, args=pipe, daemon=True).start()

    def pump(self, source, sink):
        try:
            while data := source.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.01)  # hold the bytes until thawed or cut
                sink.sendall(data)
        except OSError:
            pass
        # One side hung up: hang up the other, so no server session outlives its client.
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def freeze(self):
        self.frozen.set()

    def thaw(self):
        self.frozen.clear()

    def cut(self):
        """Break every relayed connection, both ways, as a failed link does."""
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self):
        self.listener.close()
        self.cut()  # before the thaw: bytes held while frozen are dropped, never delivered
        self.frozen.clear()
        for sock in self.sockets:
            sock.close()
