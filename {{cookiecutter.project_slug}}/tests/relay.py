"""A TCP relay to the test database that can be frozen.

Frozen, it keeps the connections open and passes nothing back: what a client sees of a
stopped server process or a network partition, where the kernel still acknowledges
every packet.
"""

import contextlib
import socket
import threading
import time


class FreezableRelay:
    """Relay TCP connections to ``target``; ``freeze()`` stops passing bytes back."""

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
            for pipe in ((client, server, "up"), (server, client, "down")):
                threading.Thread(target=self.pump, args=pipe, daemon=True).start()

    def pump(self, source, sink, direction):
        try:
            while data := source.recv(65536):
                while direction == "down" and self.frozen.is_set():
                    time.sleep(0.05)  # hold the server's answer until thawed or closed
                sink.sendall(data)
        except OSError:
            pass
        # One side hung up: hang up the other, so no server session outlives its client.
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def freeze(self):
        self.frozen.set()

    def close(self):
        self.frozen.clear()
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
