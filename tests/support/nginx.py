"""Debian's ``nginx`` with the shipped ``deploy/nginx.conf``, on a free 127.0.0.1 port.

The shipped file is used as it is, but for what belongs to a machine: the instances of its
upstream block, its ``listen`` address and its cache folder. It is included in a minimal main
configuration whose every path lies in a folder of its own (pid, temp folders, cache).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support.live import ROOT, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SHIPPED = ROOT / "deploy" / "nginx.conf"
START_TIMEOUT = 10.0

_MAIN = """worker_processes 1;
pid nginx.pid;
events { worker_connections 512; }
http {
    access_log off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    include figserve.conf;
}
"""


def site_config(
    upstreams: Sequence[str], port: int, cache_dir: Path, tls_port: int, tls_dir: Path
) -> str:
    """The shipped site configuration for these instances, these ports (plain HTTP, and
    HTTP/2 over TLS with a certificate in ``tls_dir``) and this cache."""
    text = SHIPPED.read_text()
    servers = "".join(f"    server {u} max_fails=3 fail_timeout=10s;\n" for u in upstreams)
    text, count = re.subn(r"(?m)^    server 127\.0\.0\.1:\d+ [^\n]*\n", "", text)
    assert count >= 1, "deploy/nginx.conf lists no instance"
    text = text.replace("    least_conn;\n", "    least_conn;\n" + servers, 1)
    text = text.replace("    listen 80;", f"    listen 127.0.0.1:{port};", 1)
    text = text.replace("    listen 443 ", f"    listen 127.0.0.1:{tls_port} ", 1)
    text = text.replace("/etc/ssl/figserve", str(tls_dir))
    return text.replace("/var/cache/nginx/figserve", str(cache_dir), 1)


def self_signed(folder: Path) -> None:
    """A certificate for 127.0.0.1 (browsers in tests are told to accept it)."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(folder / "privkey.pem"), "-out", str(folder / "fullchain.pem")],
        check=True, capture_output=True,
    )  # fmt: skip


class Nginx:
    def __init__(self, upstreams: Sequence[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tls_port = free_port()
        self.tls_url = f"https://127.0.0.1:{self.tls_port}"  # HTTP/2
        self.dir = Path(tempfile.mkdtemp(prefix="figserve-nginx-"))
        self.dir.chmod(0o755)  # nginx's workers run as another user when started as root
        (self.dir / "tmp").mkdir()
        (self.dir / "nginx.conf").write_text(_MAIN)
        self_signed(self.dir / "tls")
        (self.dir / "figserve.conf").write_text(
            site_config(upstreams, self.port, self.dir / "cache", self.tls_port, self.dir / "tls")
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def _cmd(self, *extra: str) -> list[str]:
        return [NGINX, "-p", f"{self.dir}/", "-c", "nginx.conf", "-e", "stderr", *extra]

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._cmd("-t"), capture_output=True, text=True, check=False)

    def start(self) -> Nginx:
        with open(self.dir / "nginx.log", "wb") as log:
            self.proc = subprocess.Popen(
                self._cmd("-g", "daemon off;"),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return self
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log()
                self.stop()
                raise RuntimeError(f"nginx did not start:\n{log}")
            time.sleep(0.02)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "nginx.log").read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def nginx(upstreams: Sequence[str]) -> Iterator[Nginx]:
    server = Nginx(upstreams)
    try:
        yield server.start()
    finally:
        server.stop()
