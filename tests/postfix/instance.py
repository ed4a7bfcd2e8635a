"""A private Postfix (with Dovecot for SASL only) on 127.0.0.1, for tests and benchmarks.

:class:`PostfixInstance` writes a complete configuration into a directory of its own (``postfix -c DIR``:
its own queue and data directories, its own log file), starts the master daemon, and stops it by its pid.
Nothing of the system's Postfix is used but the programs: ``/etc/postfix`` is not read, no system service
is started, and the listeners are on 127.0.0.1 ports picked free when it starts.

* a STARTTLS listener (``port``) and an implicit-TLS one (``smtps_port``), both with a trustme certificate;
* AUTH PLAIN/LOGIN through a private Dovecot auth service (``users``: ``{login: password}``), offered after
  TLS only;
* virtual Maildir delivery for the domain ``example.net`` (``mailboxes``), read back with
  :meth:`PostfixInstance.delivered`;
* recipient and sender access tables (``recipient_access``, ``sender_access``), ``smtpd_recipient_limit``,
  ``message_size_limit`` and anvil rate limits through ``settings``.

Root is needed (the master daemon starts as root and drops to the ``postfix`` user); :func:`unavailable`
says why an instance cannot run here, for a skip.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.processes import stop_by_pid

__all__ = ["DOMAIN", "PostfixInstance", "unavailable"]

HOST = "127.0.0.1"
DOMAIN = "example.net"
_SBIN = ("/usr/sbin", "/usr/lib/postfix", "/usr/lib/postfix/sbin", "/usr/libexec/postfix")


def program(name: str) -> str | None:
    """The path of a Postfix or Dovecot program (``postfix``, ``smtp-sink``...), or None if not installed."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def unavailable() -> str | None:
    """Why a private Postfix cannot run on this machine (None when it can)."""
    if os.name != "posix" or os.geteuid() != 0:
        return (
            "the Postfix tier needs root (Postfix's master daemon starts as root); CI runs it as root "
            "after `apt-get install postfix dovecot-core` (see .ci/run)"
        )
    missing = [name for name in ("postfix", "dovecot") if program(name) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not installed; install them with `DEBIAN_FRONTEND=noninteractive "
            "apt-get install -y postfix dovecot-core` (as .ci/run does) to run the Postfix tier"
        )
    for user in ("postfix", "dovecot", "dovenull"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"the system user {user!r} is missing; install the postfix and dovecot-core packages"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


_MASTER_CF = """\
{smtp_port}   inet  n  -  n  -  -  smtpd
{smtps_port}  inet  n  -  n  -  -  smtpd
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
cleanup    unix  n  -  n  -    0  cleanup
qmgr       unix  n  -  n  300  1  qmgr
tlsmgr     unix  -  -  n  1000? 1 tlsmgr
rewrite    unix  -  -  n  -    -  trivial-rewrite
bounce     unix  -  -  n  -    0  bounce
defer      unix  -  -  n  -    0  bounce
trace      unix  -  -  n  -    0  bounce
verify     unix  -  -  n  -    1  verify
flush      unix  n  -  n  1000? 0 flush
proxymap   unix  -  -  n  -    -  proxymap
proxywrite unix  -  -  n  -    1  proxymap
showq      unix  n  -  n  -    -  showq
error      unix  -  -  n  -    -  error
retry      unix  -  -  n  -    -  error
discard    unix  -  -  n  -    -  discard
virtual    unix  -  n  n  -    -  virtual
anvil      unix  -  -  n  -    1  anvil
scache     unix  -  -  n  -    1  scache
postlog    unix-dgram n - n -  1  postlogd
"""

_MAIN_CF = """\
compatibility_level = 3.6
config_directory = {dir}/etc
queue_directory = {dir}/queue
data_directory = {dir}/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = {dir}/log/maillog
maillog_file_prefixes = {dir}/log
syslog_name = postfix-sendchannel-test
myhostname = postfix-test.localhost
mydomain = localhost
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
# Nothing ever leaves this instance: every domain but example.net bounces at once.
default_transport = error:5.7.1 this test instance delivers to {domain} only
relay_transport = $default_transport
relayhost =
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {dir}/mail
virtual_mailbox_maps = texthash:{dir}/etc/mailboxes
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtpd_banner = $myhostname ESMTP
smtpd_tls_chain_files = {dir}/etc/tls/key.pem, {dir}/etc/tls/cert.pem
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:{dir}/etc/recipient_access
smtpd_sender_restrictions = check_sender_access texthash:{dir}/etc/sender_access
# Anvil's limits apply to 127.0.0.1 too (by default $mynetworks is exempt).
smtpd_client_event_limit_exceptions =
smtputf8_enable = yes
"""

_DOVECOT_CONF = """\
base_dir = {dir}/dovecot/run
state_dir = {dir}/dovecot/state
log_path = {dir}/dovecot/dovecot.log
instance_name = dovecot-sendchannel-test-{port}
protocols =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {dir}/dovecot/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {dir}/queue/private/auth {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""

#: Settings every instance starts with; ``settings=`` overrides and adds.
DEFAULT_SETTINGS: Mapping[str, str] = {
    "smtpd_recipient_limit": "5",
    "message_size_limit": "1048576",
}


class PostfixInstance:
    """A private Postfix and Dovecot; ``with PostfixInstance(...) as postfix:`` starts and stops both.

    Args:
        certificates: An object with ``server_certificate`` (a trustme LeafCert), as
            ``tests.smtp.servers.Certificates``.
        users: ``{login: password}`` for AUTH.
        mailboxes: Local parts at ``example.net`` that exist (others get ``550 5.1.1 User unknown``).
        recipient_access: ``{address or domain: action}`` for ``check_recipient_access``
            (``"450 4.2.1 Mailbox busy, try again in 2 minutes"``, ``"REJECT"``, ...).
        sender_access: The same for ``check_sender_access`` (refused at RCPT: delayed rejection).
        settings: More main.cf settings (``smtpd_client_message_rate_limit``, ...).
    """

    def __init__(
        self,
        *,
        certificates: Any,
        users: Mapping[str, str] | None = None,
        mailboxes: tuple[str, ...] = (),
        recipient_access: Mapping[str, str] | None = None,
        sender_access: Mapping[str, str] | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.certificates = certificates
        self.users = dict(users or {})
        self.mailboxes = tuple(mailboxes)
        self.recipient_access = dict(recipient_access or {})
        self.sender_access = dict(sender_access or {})
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.dir = Path()
        self.port = self.smtps_port = 0
        self._postfix_pid: int | None = None
        self._dovecot_pid: int | None = None

    # -- configuration -------------------------------------------------------------------------------

    def _write(self, name: str, text: str, mode: int = 0o644) -> Path:
        path = self.dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)
        return path

    def _configure(self) -> None:
        nobody = pwd.getpwnam("nobody")
        self._write(
            "etc/main.cf",
            _MAIN_CF.format(dir=self.dir, domain=DOMAIN, uid=nobody.pw_uid, gid=nobody.pw_gid)
            + "".join(f"{name} = {value}\n" for name, value in self.settings.items()),
        )
        self._write("etc/master.cf", _MASTER_CF.format(smtp_port=f"{HOST}:{self.port}",
                                                   smtps_port=f"{HOST}:{self.smtps_port}"))
        self._write("etc/mailboxes", "".join(f"{box}@{DOMAIN} {DOMAIN}/{box}/\n" for box in self.mailboxes))
        self._write("etc/recipient_access", "".join(f"{k} {v}\n" for k, v in self.recipient_access.items()))
        self._write("etc/sender_access", "".join(f"{k} {v}\n" for k, v in self.sender_access.items()))
        tls = self.dir / "etc" / "tls"
        tls.mkdir(mode=0o700)
        self.certificates.server_certificate.private_key_pem.write_to_path(str(tls / "key.pem"))
        self.certificates.server_certificate.cert_chain_pems[0].write_to_path(str(tls / "cert.pem"))
        for pem in self.certificates.server_certificate.cert_chain_pems[1:]:
            with (tls / "cert.pem").open("ab") as chain:
                chain.write(pem.bytes())
        postfix = pwd.getpwnam("postfix")
        for sub in ("queue", "log"):
            (self.dir / sub).mkdir(mode=0o755)
        (self.dir / "data").mkdir(mode=0o700)
        os.chown(self.dir / "data", postfix.pw_uid, postfix.pw_gid)
        mail = self.dir / "mail"
        mail.mkdir()
        os.chown(mail, nobody.pw_uid, nobody.pw_gid)
        dovecot = self.dir / "dovecot"
        for sub in ("run", "state"):
            (dovecot / sub).mkdir(parents=True)
        self._write("dovecot/dovecot.conf", _DOVECOT_CONF.format(dir=self.dir, port=self.port))
        self._write(
            "dovecot/users",
            "".join(f"{login}:{{PLAIN}}{password}\n" for login, password in self.users.items()),
            mode=0o600,
        )
        # Dovecot's auth process runs as its own user and reads the passwords; nobody else may.
        os.chown(dovecot / "users", pwd.getpwnam("dovecot").pw_uid, grp.getgrnam("dovecot").gr_gid)

    # -- running ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Write the configuration, start Postfix and Dovecot, and wait until both answer."""
        reason = unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        last_error = ""
        for _ in range(3):  # a port picked free may be taken by another process before Postfix binds it
            self.dir = Path(tempfile.mkdtemp(prefix="sendchannel-postfix-"))
            self.dir.chmod(0o755)
            self.port, self.smtps_port = _free_port(), _free_port()
            self._configure()
            try:
                self._start_postfix()
                self._start_dovecot()
                self._wait_ready()
                return
            except RuntimeError as exc:
                last_error = str(exc)
                self.stop()
            except BaseException:
                self.stop()
                raise
        raise RuntimeError(f"the private Postfix did not start: {last_error}")

    def _run(self, *command: str) -> None:
        # The daemons keep the descriptors they inherit: output goes to a file, not a pipe never closed.
        with tempfile.TemporaryFile("w+") as output:
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=output, stderr=output, timeout=60, check=False
            )
            output.seek(0)
            text = output.read().strip()
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {text}\n{self.log()[-2000:]}")

    def _start_postfix(self) -> None:
        self._run(program("postfix") or "postfix", "-c", str(self.dir / "etc"), "start")
        self._postfix_pid = self._read_pid(self.dir / "queue" / "pid" / "master.pid")

    def _start_dovecot(self) -> None:
        self._run(program("dovecot") or "dovecot", "-c", str(self.dir / "dovecot" / "dovecot.conf"))
        self._dovecot_pid = self._read_pid(self.dir / "dovecot" / "run" / "master.pid")

    @staticmethod
    def _read_pid(path: Path, wait: float = 30.0) -> int:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, ValueError):
                return int(path.read_text().split()[0])
            time.sleep(0.05)
        raise RuntimeError(f"no pid file at {path}")

    def _wait_ready(self, wait: float = 30.0) -> None:
        deadline = time.monotonic() + wait
        auth = self.dir / "queue" / "private" / "auth"
        while time.monotonic() < deadline:
            if auth.exists() and all(self._answers(port) for port in (self.port, self.smtps_port)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"Postfix or Dovecot did not get ready within {wait:g} s:\n{self.log()[-2000:]}")

    @staticmethod
    def _answers(port: int) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=1):
            return True
        return False

    def stop(self) -> None:
        """Stop Dovecot and Postfix by their pids, wait for them to go, and remove the directory."""
        # Postfix first: its smtpd processes hold connections to Dovecot's auth service.
        for attribute in ("_postfix_pid", "_dovecot_pid"):
            pid = getattr(self, attribute)
            setattr(self, attribute, None)
            if pid is not None:
                stop_by_pid(pid)
        if self.dir != Path() and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostfixInstance:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading back ----------------------------------------------------------------------------------

    def log(self) -> str:
        """Postfix's log so far (and Dovecot's)."""
        text = ""
        for path in (self.dir / "log" / "maillog", self.dir / "dovecot" / "dovecot.log"):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return text

    def delivered(self, mailbox: str) -> list[bytes]:
        """The messages delivered to ``mailbox`` (its local part), oldest first."""
        new = self.dir / "mail" / DOMAIN / mailbox / "new"
        if not new.is_dir():
            return []
        paths = sorted(new.iterdir(), key=lambda p: (p.stat().st_mtime, p.name))
        return [path.read_bytes() for path in paths]

    def wait_delivered(self, mailbox: str, count: int, wait: float = 60.0) -> list[bytes]:
        """Wait until ``mailbox`` has ``count`` messages (Postfix delivers in the background)."""
        deadline = time.monotonic() + wait
        while True:
            found = self.delivered(mailbox)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def sessions(self, at_least: int = 0, wait: float = 30.0) -> list[str]:
        """The "disconnect from ..." lines of sessions that said EHLO (not bare readiness probes), once every
        session that began has ended in the log and there are ``at_least`` (Postfix logs through postlogd, a
        moment after a session ends: a count taken earlier could miss the previous test's session)."""
        deadline = time.monotonic() + wait
        while True:
            lines = self.log().splitlines()
            began = sum(": connect from " in line for line in lines)
            ended = [line for line in lines if ": disconnect from " in line]
            said_ehlo = [line for line in ended if "ehlo=" in line]
            if (began == len(ended) and len(said_ehlo) >= at_least) or time.monotonic() > deadline:
                return said_ehlo
            time.sleep(0.05)

    def wait_log(self, text: str, count: int, wait: float = 60.0) -> int:
        """Wait until ``text`` is in the log ``count`` times (Postfix logs through postlogd); the count."""
        deadline = time.monotonic() + wait
        while True:
            found = self.log().count(text)
            if found >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)
