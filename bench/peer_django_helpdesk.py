"""The peer baseline for bench_email.py: django-helpdesk turning e-mail into
tickets, measured on this machine in the same run as omnidesk.

Runs in a virtualenv of its own (bench_email.py makes it: django-helpdesk
is not one of omnidesk's dependencies) with Django's SQLite backend, the
way django-helpdesk's ``get_email`` management command runs: one queue whose
mailbox is a local directory of .eml files or an IMAP mailbox, processed by
``helpdesk.email.process_email``. Mail it would send (the acknowledgement to
the submitter) goes to Django's in-memory backend: rendered, not sent.

    python peer_django_helpdesk.py local DIR
    python peer_django_helpdesk.py imap HOST PORT USER PASSWORD

Prints one JSON line: the seconds ``process_email`` took and the tickets and
follow-ups it made.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path


def configure(tmp: Path) -> None:
    import django
    from django.conf import settings

    # helpdesk reverses its URLs (the ticket link in its acknowledgement) in
    # the "helpdesk" namespace
    (tmp / "peer_urls.py").write_text(
        "from django.urls import include, path\n"
        'urlpatterns = [path("", include("helpdesk.urls", namespace="helpdesk"))]\n'
    )
    sys.path.insert(0, str(tmp))

    settings.configure(
        SECRET_KEY="bench",
        DEBUG=False,
        USE_TZ=True,
        SITE_ID=1,
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "django.contrib.sites",
            "django.contrib.humanize",
            "rest_framework",
            "helpdesk",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        ROOT_URLCONF="peer_urls",
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp / "db.sqlite3")}
        },
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        MEDIA_ROOT=str(tmp / "media"),
        STATIC_URL="/static/",
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        LOGGING={"version": 1, "disable_existing_loggers": False, "root": {"level": "CRITICAL"}},
        HELPDESK_TEAMS_MODE_ENABLED=False,
    )
    django.setup()


def main() -> None:
    mode, *args = sys.argv[1:]
    with tempfile.TemporaryDirectory() as d:
        configure(Path(d))
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        from helpdesk.email import process_email
        from helpdesk.models import FollowUp, Queue, Ticket

        box: dict[str, object]
        if mode == "local":
            box = {"email_box_type": "local", "email_box_local_dir": args[0]}
        else:
            host, port, user, password = args
            box = {
                "email_box_type": "imap",
                "email_box_host": host,
                "email_box_port": int(port),
                "email_box_ssl": False,
                "email_box_user": user,
                "email_box_pass": password,
                "email_box_imap_folder": "INBOX",
            }
        Queue.objects.create(
            title="Support",
            slug="support",
            email_address="support@example.com",
            allow_email_submission=True,
            email_box_interval=0,
            logging_type="none",
            **box,
        )
        t0 = time.perf_counter()
        process_email(quiet=True)
        secs = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "seconds": secs,
                    "tickets": Ticket.objects.count(),
                    "followups": FollowUp.objects.count(),
                }
            )
        )


if __name__ == "__main__":
    main()
