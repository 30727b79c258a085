"""A throwaway Dovecot IMAP server for the tests: its own config, users, maildirs and port.

Debian's `dovecot-imapd` (installed by .ci/run). As root, Dovecot's login processes run as
`dovenull` and the mail as `dovecot`; as another user, everything runs as that user.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD = "support", "s3cret-pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Dovecot:
    root: Path
    port: int  # plain IMAP (also offers STARTTLS)
    tls_port: int  # implicit TLS
    ca_file: Path
    proc: subprocess.Popen[bytes]

    def client(self) -> imaplib.IMAP4:
        c = imaplib.IMAP4("127.0.0.1", self.port)
        c.login(USER, PASSWORD)
        return c

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        c = self.client()
        try:
            typ, data = c.append(folder, None, None, raw)
            assert typ == "OK", data
        finally:
            c.logout()

    def uids(self, folder: str = "INBOX", criteria: str = "ALL") -> list[int]:
        c = self.client()
        try:
            typ, _ = c.select(f'"{folder}"')
            assert typ == "OK", folder
            typ, data = c.uid("search", None, criteria)
            return [int(x) for x in data[0].split()]
        finally:
            c.logout()

    def uidvalidity(self, folder: str = "INBOX") -> int:
        c = self.client()
        try:
            typ, data = c.status(f'"{folder}"', "(UIDVALIDITY)")
            assert typ == "OK", data
            return int(data[0].split()[-1].rstrip(b")"))
        finally:
            c.logout()

    def stop(self) -> None:
        """The master and every process it started (an imap process serving a live client
        outlives its master): the process group of the Dovecot this fixture started."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def start_dovecot(root: Path) -> Dovecot:
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(binary).exists():
        raise FileNotFoundError("dovecot is not installed (Debian: apt-get install dovecot-imapd)")
    for d in ("run", "state", "mail", "home"):
        (root / d).mkdir(parents=True, exist_ok=True)
    if os.getuid() == 0:
        login_user, internal_user = "dovenull", "dovecot"
        mail = pwd.getpwnam("dovecot")
        for d in ("mail", "home"):
            os.chown(root / d, mail.pw_uid, mail.pw_gid)
        os.chmod(root, 0o755)
    else:
        me = pwd.getpwuid(os.getuid())
        login_user = internal_user = me.pw_name
        mail = me
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    port, tls_port = free_port(), free_port()
    (root / "dovecot.conf").write_text(f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
first_valid_uid = {min(mail.pw_uid, 1)}
default_internal_user = {internal_user}
default_internal_group = {grp.getgrgid(pwd.getpwnam(internal_user).pw_gid).gr_name}
default_login_user = {login_user}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail.pw_uid} gid={mail.pw_gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
""")
    proc = subprocess.Popen([binary, "-F", "-c", str(root / "dovecot.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # a group of its own, stopped whole
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            c = imaplib.IMAP4("127.0.0.1", port)
            c.login(USER, PASSWORD)
            c.logout()
            return Dovecot(root=root, port=port, tls_port=tls_port, ca_file=cert, proc=proc)
        except (OSError, imaplib.IMAP4.error):
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.terminate()
    log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
    raise RuntimeError(f"dovecot did not start: {log[-2000:]}")


def tls_context(d: Dovecot) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(d.ca_file))
