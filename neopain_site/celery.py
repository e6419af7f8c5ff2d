"""Celery application: JSON messages, an `inference` queue, late acks (see settings)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "neopain_site.settings")

app = Celery("neopain_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
