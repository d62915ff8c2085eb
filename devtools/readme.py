"""Follow a baked project's README as a new user would: run its marked shell blocks.

A block is marked by an HTML comment on the line before its fence::

    <!-- step: run-local -->
    ```bash
    python manage.py migrate
    ```

:class:`Reader` runs a block one line at a time in ``bash``, as typed into a terminal: the
``export`` lines before a line stay in force for it, ``createsuperuser`` gets its answers
on a pseudo-terminal, and a line that starts a server (``runserver``, ``gunicorn``) runs in
the background until the caller stops it. The only liberty taken with the text is
:data:`PLACEHOLDERS`: the README writes ``USER``, ``PASSWORD``, ``5432`` and ``8000`` where
a reader puts their own role, password and ports.
"""

import fcntl
import http.cookiejar
import os
import re
import select
import subprocess
import termios
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from devtools.bakery import stop_group

STEP = re.compile(r"^<!-- step: ([\w-]+) -->\n```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
# A fenced code block, at any indentation (inside a list item too).
FENCE = re.compile(r"^(?P<indent> *)```\w*\n(?P<body>.*?)^(?P=indent)```", re.MULTILINE | re.DOTALL)
PLACEHOLDERS = ("USER", "PASSWORD", "5432", "8000")
SERVERS = re.compile(r"\b(runserver|gunicorn)\b")

SUPERUSER = {"username": "admin", "email": "admin@example.com", "password": "Qx7-lunar-orbit-42"}
PROMPTS = (
    ("Username", SUPERUSER["username"]),
    ("Email address:", SUPERUSER["email"]),
    ("Password:", SUPERUSER["password"]),
    ("Password (again):", SUPERUSER["password"]),
)


def code_block(text, marker):
    """The one code block of ``text`` (markdown) containing ``marker``, its indentation removed."""
    blocks = [
        re.sub(rf"^{match['indent']}", "", match["body"], flags=re.MULTILINE)
        for match in FENCE.finditer(text)
        if marker in match["body"]
    ]
    assert len(blocks) == 1, f"{len(blocks)} code blocks contain {marker!r}"
    return blocks[0]


def steps(readme):
    """The README's marked blocks: ``{name: text}``."""
    return {name: text for name, text in STEP.findall(Path(readme).read_text())}


def fill_in(text, values):
    """``text`` with each placeholder word replaced by ``values[placeholder]``."""
    pattern = re.compile(r"(?<![$\w])(" + "|".join(map(re.escape, values)) + r")\b")
    return pattern.sub(lambda match: str(values[match.group(1)]), text)


class Reader:
    """Runs README blocks in ``project`` with ``env``, placeholders filled from ``values``."""

    def __init__(self, project, env, values):
        self.project = Path(project)
        self.env = env
        self.values = values
        self.exports = []
        self.transcript = []

    def commands(self, text):
        lines = fill_in(text, self.values).splitlines()
        return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]

    def run(self, name, text, *, timeout=300):
        """Run every line of block ``name``; return the server started by its last line, if any."""
        server = None
        for line in self.commands(text):
            self.transcript.append(f"[{name}] $ {line}")
            if line.startswith("export "):
                self.exports.append(line)
                self._bash(line, timeout=30)  # a broken export fails here, not later
            elif SERVERS.search(line):
                server = self._background(line)
            elif "createsuperuser" in line:
                self._interactive(line, PROMPTS, timeout=timeout)
            else:
                self._bash(line, timeout=timeout)
        return server

    def _script(self, line):
        return "\n".join(["set -euo pipefail", *self.exports, line])

    def _bash(self, line, *, timeout):
        result = subprocess.run(
            ["bash", "-c", self._script(line)],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.transcript.append(result.stdout[-3000:] + result.stderr[-3000:])
        if result.returncode != 0:
            raise AssertionError(f"README step failed ({result.returncode}):\n" + self.log())

    def _background(self, line):
        log = self.project / f"server-{len(self.transcript)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                ["bash", "-c", self._script(f"exec {line}")],
                cwd=self.project,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stopped as a group, with its workers or reloader
            )
        return Server(process, log)

    def _interactive(self, line, prompts, *, timeout):
        """Run ``line`` on a pseudo-terminal, typing each answer once its prompt shows."""
        controller, terminal = os.openpty()
        process = subprocess.Popen(
            ["bash", "-c", self._script(line)],
            cwd=self.project,
            env=self.env,
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            start_new_session=True,
            # The terminal becomes the controlling one, which getpass reads passwords from.
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(terminal)
        output, seen, pending = b"", 0, list(prompts)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([controller], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(controller, 4096)
                    except OSError:  # the other side closed: the command ended
                        chunk = b""
                    if not chunk:
                        break
                    output += chunk
                while pending and (found := output.find(pending[0][0].encode(), seen)) >= 0:
                    seen = found + len(pending[0][0])
                    os.write(controller, pending.pop(0)[1].encode() + b"\n")
            returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            os.close(controller)
            if process.poll() is None:
                process.kill()
                process.wait()
        self.transcript.append(output.decode(errors="replace")[-3000:])
        if returncode != 0 or pending:
            raise AssertionError(f"README step failed ({returncode}):\n" + self.log())

    def log(self):
        return "\n".join(self.transcript)[-8000:]


class Server:
    """A server a README step started in the background."""

    def __init__(self, process, log):
        self.process = process
        self.log = log

    def wait_until_answering(self, url, timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited:\n{self.log.read_text()[-4000:]}")
            try:
                urllib.request.urlopen(url, timeout=5).close()
                return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                if time.monotonic() > deadline:
                    log = self.log.read_text()[-4000:]
                    raise AssertionError(f"no answer from {url}:\n{log}") from None
                time.sleep(0.2)

    def stop(self):
        stop_group(self.process)


class _LocalhostCookies(http.cookiejar.DefaultCookiePolicy):
    """Send ``Secure`` cookies to a loopback server over HTTP, as browsers do for localhost."""

    def return_ok_secure(self, cookie, request):
        return True


class Browser:
    """Just enough of a browser to log in to Django's admin: cookies and forms."""

    def __init__(self, base):
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar(policy=_LocalhostCookies()))
        )

    def get(self, path):
        with self.opener.open(self.base + path, timeout=10) as response:
            return response.status, response.headers, response.read().decode(errors="replace")

    def post(self, path, fields):
        data = urllib.parse.urlencode(fields).encode()
        with self.opener.open(self.base + path, data=data, timeout=10) as response:
            return response.url, response.read().decode(errors="replace")

    def log_in_to_admin(self, username, password):
        """Log in through the admin's form; return the page it lands on and its URL."""
        _, _, page = self.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        fields = {
            "csrfmiddlewaretoken": token,
            "username": username,
            "password": password,
            "next": "/admin/",
        }
        return self.post("/admin/login/?next=/admin/", fields)
