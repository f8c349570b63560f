"""Send one test e-mail through the configured backend (SMTP in production, the console locally).

    manage.py email_test --to ops@example.com

A refusal of the SMTP server (authentication, TLS, a refused sender) is printed and exits 1, so a
deployment script notices; the password never appears (the error is Django's/smtplib's own text).
"""

from __future__ import annotations

import socket

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.utils import timezone

from fluxsite.reporting import scrub_text


class Command(BaseCommand):
    help = "Send a test e-mail through the configured e-mail backend."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--to", required=True, help="The address to send the test to.")

    def handle(self, *args, **options) -> None:
        to = options["to"].strip()
        try:
            validate_email(to)
        except ValidationError:
            raise CommandError(f"{to!r} is not an e-mail address.")
        host = socket.gethostname()
        subject = f"Fluxsite test e-mail from {host}"
        body = (
            f"This is a test e-mail sent by `manage.py email_test` on {host} at {timezone.now():%Y-%m-%d %H:%M:%S} UTC.\n"
            f"Site: {settings.SITE_URL}\nBackend: {settings.EMAIL_BACKEND}\nFrom: {settings.DEFAULT_FROM_EMAIL}\n"
        )
        try:
            sent = send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [to], fail_silently=False)
        except Exception as exc:  # smtplib raises OSErrors and its own; another backend may raise anything
            raise CommandError(f"The e-mail was not sent: {type(exc).__name__}: {scrub_text(str(exc))}")
        if sent != 1:
            raise CommandError("The e-mail backend accepted nothing (it sent 0 messages).")
        self.stdout.write(self.style.SUCCESS(f"Sent a test e-mail to {to} through {settings.EMAIL_BACKEND}."))
