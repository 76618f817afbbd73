"""A TCP proxy in front of the test database, so a test can cut it off and bring it back."""

from __future__ import annotations

import socket
import threading

from sqlalchemy.engine import make_url

from tests.conftest import free_port


class DbProxy:
    def __init__(self, database_url: str) -> None:
        url = make_url(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        host = url.query.get("host") or url.host or "127.0.0.1"
        if isinstance(host, tuple):
            host = host[0]
        port = url.port or 5432
        self.target: tuple[socket.AddressFamily, str | tuple[str, int]] = (
            (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
            if str(host).startswith("/")
            else (socket.AF_INET, (host, port))
        )
        self.port = free_port()
        self.url = url.set(host="127.0.0.1", port=self.port, query={}).render_as_string(
            hide_password=False
        )
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut the open ones, as a database outage would."""
        if self._listener is not None:
            try:  # wakes the thread blocked in accept(); close() alone does not on Linux
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            family, address = self.target
            upstream = socket.socket(family)
            upstream.connect(address)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
