"""Tell people how a run ended: a webhook (JSON POST) and/or email through SMTP.

A job's :class:`Notify` says where and when (``failure``, ``success`` or ``always``).
Only a run's final outcome is announced: a failure after its last retry, not each
attempt. Delivery problems are reported back as :class:`Delivery` records and logged;
they never change the run's status.

SMTP settings come from the job (``smtp="host:port"``) or the environment:
``PROCESTRA_SMTP_HOST`` (default ``localhost``), ``PROCESTRA_SMTP_PORT`` (25),
``PROCESTRA_SMTP_FROM``, ``PROCESTRA_SMTP_USER``, ``PROCESTRA_SMTP_PASSWORD``,
``PROCESTRA_SMTP_STARTTLS=1``, ``PROCESTRA_SMTP_SSL=1``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from procestra.errors import InvalidArgumentError

__all__ = ["Delivery", "Notify", "SmtpSettings", "send"]

log = logging.getLogger(__name__)

WHEN = ("failure", "success", "always")
_EMAIL_RE = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$|^[^@\s,;<>]+@localhost$")
#: Final statuses that count as a failure for ``on="failure"``.
FAILURES = frozenset({"failed", "timed_out", "cancelled"})


@dataclass(frozen=True)
class Notify:
    """Where to announce a job's runs: ``webhook`` URL, ``email`` addresses, and ``on`` which outcome."""

    webhook: str | None = None
    email: tuple[str, ...] = ()
    on: str = "failure"
    smtp: str | None = None  # "host:port"; else the PROCESTRA_SMTP_* environment

    def __post_init__(self) -> None:
        object.__setattr__(self, "email", tuple(self.email))
        if self.on not in WHEN:
            raise InvalidArgumentError(f"notify on {self.on!r}: use one of {', '.join(WHEN)}", parameter="notify_on")
        if self.webhook is not None:
            parts = urlsplit(self.webhook)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidArgumentError(f"webhook {self.webhook!r} is not an http(s) URL with a host",
                                           parameter="notify_webhook")
        for address in self.email:
            if not isinstance(address, str) or not _EMAIL_RE.match(address):
                raise InvalidArgumentError(f"email address {address!r} is not valid", parameter="notify_email")
        if self.smtp is not None:
            _host_port(self.smtp)

    @property
    def active(self) -> bool:
        return bool(self.webhook or self.email)

    def wants(self, status: str) -> bool:
        """Whether a run that ended with ``status`` is announced."""
        if not self.active or status == "skipped":
            return False
        return self.on == "always" or (self.on == "success") == (status == "succeeded")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["email"] = list(self.email)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Notify:
        d = dict(d or {})
        return cls(webhook=d.get("webhook"), email=tuple(d.get("email") or ()), on=d.get("on") or "failure",
                   smtp=d.get("smtp"))


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgumentError(f"SMTP server {text!r}: use HOST:PORT", parameter="smtp")
    return host, int(port)


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the mail server."""

    host: str = "localhost"
    port: int = 25
    sender: str = ""
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    ssl: bool = False
    timeout: float = 10.0

    @classmethod
    def from_env(cls, override: str | None = None) -> SmtpSettings:
        env = os.environ
        host, port = (_host_port(override) if override else
                      (env.get("PROCESTRA_SMTP_HOST") or "localhost", int(env.get("PROCESTRA_SMTP_PORT") or 25)))
        return cls(host=host, port=port,
                   sender=env.get("PROCESTRA_SMTP_FROM") or f"procestra@{socket.gethostname() or 'localhost'}",
                   user=env.get("PROCESTRA_SMTP_USER") or None, password=env.get("PROCESTRA_SMTP_PASSWORD") or None,
                   starttls=env.get("PROCESTRA_SMTP_STARTTLS") == "1", ssl=env.get("PROCESTRA_SMTP_SSL") == "1")


@dataclass(frozen=True)
class Delivery:
    """One attempt to notify: the channel (``webhook``/``email``), target, and whether it worked."""

    channel: str
    target: str
    ok: bool
    error: str | None = None


def _subject(payload: dict[str, Any]) -> str:
    return (f"[procestra] job {payload.get('job')} {str(payload.get('status')).replace('_', ' ')} "
            f"(attempt {payload.get('attempt')}) for {payload.get('scheduled_for')}")


def _body(payload: dict[str, Any]) -> str:
    lines = [_subject(payload)[len("[procestra] "):], ""]
    for key in ("run", "job", "status", "scheduled_for", "attempt", "started", "ended", "seconds"):
        lines.append(f"{key}: {payload.get(key)}")
    err = payload.get("error")
    if err:
        lines += ["", f"error in cell {err.get('cell')}: {err.get('name')}: {err.get('value')}"]
    for key in ("output", "html"):
        if payload.get(key):
            lines.append(f"{key}: {payload[key]}")
    return "\n".join(lines) + "\n"


def send_webhook(url: str, payload: dict[str, Any], *, timeout: float = 10.0, attempts: int = 2) -> Delivery:
    """POST ``payload`` as JSON to ``url``; retried once on a connection error or a 5xx."""
    import httpx

    error = None
    for i in range(attempts):
        try:
            resp = httpx.post(url, json=payload, timeout=timeout, headers={"User-Agent": "procestra"})
            if resp.status_code < 300:
                return Delivery("webhook", url, True)
            error = f"HTTP {resp.status_code}"
            if resp.status_code < 500:
                break
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if i + 1 < attempts:
            time.sleep(1.0)
    log.warning("webhook %s failed: %s", url, error)
    return Delivery("webhook", url, False, error)


def send_email(to: tuple[str, ...], payload: dict[str, Any], smtp: SmtpSettings) -> Delivery:
    """Mail a plain-text summary of the run to ``to``."""
    import email.policy  # smtplib and email (ssl with them) load only to send mail
    import smtplib
    from email.message import EmailMessage

    msg = EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))  # no folded subjects
    msg["Subject"] = _subject(payload)
    msg["From"] = smtp.sender
    msg["To"] = ", ".join(to)
    msg.set_content(_body(payload))
    target = ", ".join(to)
    try:
        cls = smtplib.SMTP_SSL if smtp.ssl else smtplib.SMTP
        with cls(smtp.host, smtp.port, timeout=smtp.timeout) as server:
            if smtp.starttls:
                server.starttls()
            if smtp.user:
                server.login(smtp.user, smtp.password or "")
            server.send_message(msg)
        return Delivery("email", target, True)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("email to %s via %s:%s failed: %s", target, smtp.host, smtp.port, exc)
        return Delivery("email", target, False, f"{type(exc).__name__}: {exc}")


def send(notify: Notify, payload: dict[str, Any], *, smtp: SmtpSettings | None = None) -> list[Delivery]:
    """Announce the run in ``payload`` (job, run, status, error, ...) if ``notify`` wants its status."""
    if not notify.wants(str(payload.get("status"))):
        return []
    out = []
    if notify.webhook:
        out.append(send_webhook(notify.webhook, payload))
    if notify.email:
        out.append(send_email(notify.email, payload, smtp or SmtpSettings.from_env(notify.smtp)))
    return out
