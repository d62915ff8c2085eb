"""A TCP relay to the test database that can be frozen.

Frozen, it keeps the connections open and passes nothing back: what a client sees of a
stopped server process or a network partition, where the kernel still acknowledges
every packet.
"""

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
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for pipe in ((client, server, "up"), (server, client, "down")):
                threading.Thread(target=self.pump, args=pipe, daemon=True).start()

    def pump(self, source, sink, direction):
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            while direction == "down" and self.frozen.is_set():
                time.sleep(0.05)  # hold the server's answer forever
            try:
                sink.sendall(data)
            except OSError:
                return

    def freeze(self):
        self.frozen.set()

    def close(self):
        self.listener.close()
        for sock in self.sockets:
            sock.close()
