"""manage.py email_test: one test e-mail through the configured backend, a refusal exits 1."""

from __future__ import annotations

import io
import socket
import threading

import pytest
from django.core import mail
from django.core.management import CommandError, call_command


def send(*args: str) -> str:
    out = io.StringIO()
    call_command("email_test", *args, stdout=out)
    return out.getvalue()


def test_it_sends_one_test_e_mail_to_the_address(settings):
    settings.DEFAULT_FROM_EMAIL = "Fluxsite <noreply@fluxsite.example.com>"
    out = send("--to", "ops@example.com")
    [message] = mail.outbox
    assert message.to == ["ops@example.com"]
    assert message.from_email == "Fluxsite <noreply@fluxsite.example.com>"
    assert "test e-mail" in message.subject
    assert "locmem" in message.body  # says which backend sent it
    assert "Sent a test e-mail to ops@example.com" in out


def test_it_refuses_something_that_is_not_an_address():
    with pytest.raises(CommandError, match="is not an e-mail address"):
        send("--to", "not an address")
    assert mail.outbox == []


@pytest.fixture
def refusing_smtp_server():
    """A real SMTP conversation (over TCP) with a server that refuses the login, with a 535."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            reader = conn.makefile("rb")
            conn.sendall(b"220 test ESMTP\r\n")
            for line in reader:
                verb = line.split(b" ")[0].strip().upper()
                if verb in (b"EHLO", b"HELO"):
                    conn.sendall(b"250-test\r\n250 AUTH PLAIN LOGIN\r\n")
                elif verb == b"AUTH":
                    conn.sendall(b"535 5.7.8 Authentication credentials invalid\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"502 not here\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.close()


def test_an_smtp_refusal_is_reported_without_the_password(settings, refusing_smtp_server):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = refusing_smtp_server
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_HOST_USER = "mailer"
    settings.EMAIL_HOST_PASSWORD = "smtp-password-hunter2"
    settings.EMAIL_TIMEOUT = 5
    with pytest.raises(CommandError, match="SMTPAuthenticationError") as refused:
        send("--to", "ops@example.com")
    assert "smtp-password-hunter2" not in str(refused.value)
