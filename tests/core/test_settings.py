"""Production-safe settings: without DJANGO_DEBUG=1 the settings are production settings, a missing
secret stops start-up with one line, and `check --deploy` is clean. Each case starts a fresh
process (settings are read once per process), with the suite's DATABASE_URL / REDIS_URL."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from apps.core import crypto

BASE = Path(__file__).resolve().parents[2]
CONFIG_VARS = (
    "DJANGO_DEBUG",
    "DJANGO_SECRET_KEY",
    "FIELD_ENCRYPTION_KEYS",
    "DJANGO_ALLOWED_HOSTS",
    "WEBHOOK_ALLOW_PRIVATE_URLS",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "DJANGO_SECURE_SSL_REDIRECT",
    "DJANGO_SECURE_HSTS_SECONDS",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "DJANGO_SECURE_HSTS_PRELOAD",
)
SECRET = secrets.token_urlsafe(50)
FERNET_KEY = Fernet.generate_key().decode()
NO_SECRET_KEY = (
    "error: DJANGO_SECRET_KEY is not set: production settings (DJANGO_DEBUG unset or 0) need a long random "
    "secret; for development set DJANGO_DEBUG=1"
)
NO_ENCRYPTION_KEYS = (
    "error: FIELD_ENCRYPTION_KEYS is not set: production settings need one or more Fernet keys (make one "
    "with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'); "
    "for development set DJANGO_DEBUG=1"
)


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    """``args`` in a new process whose configuration is only the suite's services plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    clean["DJANGO_DOTENV"] = "0"  # the checkout's .env (development mode) does not apply here
    return subprocess.run(
        args, cwd=BASE, env={**clean, **env}, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({}, NO_SECRET_KEY),
        ({"DJANGO_DEBUG": "0", "FIELD_ENCRYPTION_KEYS": FERNET_KEY}, NO_SECRET_KEY),
        ({"DJANGO_SECRET_KEY": SECRET}, NO_ENCRYPTION_KEYS),
        (
            {"DJANGO_SECRET_KEY": SECRET, "FIELD_ENCRYPTION_KEYS": f"{FERNET_KEY},not-a-key"},
            "error: FIELD_ENCRYPTION_KEYS: key 2 is not a Fernet key (32 url-safe base64-encoded bytes)",
        ),
    ],
    ids=["nothing-set", "debug-0-no-secret-key", "no-encryption-keys", "bad-encryption-key"],
)
def test_manage_py_stops_with_one_line_when_a_production_secret_is_missing(env, line):
    # when
    result = run([sys.executable, "manage.py", "check"], **env)

    # then
    assert (result.returncode, result.stdout, result.stderr) == (1, "", line + "\n")


def test_django_setup_refuses_production_settings_without_a_secret_key():
    # when: anything else that loads the settings (a worker, the WSGI server)
    result = run(
        [sys.executable, "-c", "import django; django.setup()"], DJANGO_SETTINGS_MODULE="config.settings"
    )

    # then
    assert result.returncode == 1
    assert (
        result.stderr.splitlines()[-1] == "django.core.exceptions.ImproperlyConfigured: " + NO_SECRET_KEY[7:]
    )


PRINT_SETTINGS = """
import django; django.setup()
from django.conf import settings as s
print(s.DEBUG, s.WEBHOOK_ALLOW_PRIVATE_URLS, s.ALLOWED_HOSTS, s.FIELD_ENCRYPTION_KEYS == [{key!r}],
      s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS)
"""


def test_without_django_debug_the_settings_are_production_settings():
    # when
    result = run(
        [sys.executable, "-c", PRINT_SETTINGS.format(key=FERNET_KEY)],
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_SECRET_KEY=SECRET,
        FIELD_ENCRYPTION_KEYS=FERNET_KEY,
    )

    # then: debug off, SSRF guard on, no host served until named, secure cookies, https, HSTS a year
    assert (result.returncode, result.stdout) == (0, "False False [] True True True True 31536000\n")


def test_development_settings_need_no_secret_and_keep_the_derived_encryption_key():
    # when
    result = run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.DEBUG, s.WEBHOOK_ALLOW_PRIVATE_URLS, s.FIELD_ENCRYPTION_KEYS[0])",
        ],
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="1",
    )

    # then: the key development databases were encrypted with so far
    derived = base64.urlsafe_b64encode(
        hashlib.sha256(b"field-encryption:dev-insecure-secret-key-do-not-use-in-production").digest()
    ).decode()
    assert (result.returncode, result.stdout) == (0, f"True True {derived}\n")


def test_check_deploy_is_clean_in_production_settings():
    # when: what .ci/run runs
    result = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_SECRET_KEY=SECRET,
        FIELD_ENCRYPTION_KEYS=FERNET_KEY,
        DJANGO_ALLOWED_HOSTS=".payments.example.com",
    )

    # then: only HSTS preload is silenced (an opt-in commitment, see config/settings.py)
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "System check identified no issues (1 silenced).\n",
        "",
    )


def test_check_deploy_warns_when_the_webhook_ssrf_guard_is_turned_off_in_production():
    # when
    result = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING", "--tag", "security"],
        DJANGO_SECRET_KEY=SECRET,
        FIELD_ENCRYPTION_KEYS=FERNET_KEY,
        DJANGO_ALLOWED_HOSTS=".payments.example.com",
        WEBHOOK_ALLOW_PRIVATE_URLS="1",
    )

    # then
    assert result.returncode == 1
    assert "?: (core.W001) WEBHOOK_ALLOW_PRIVATE_URLS is on in production" in result.stderr


def test_encryption_never_derives_a_key_when_none_is_configured():
    # given
    crypto.keys_forget()
    try:
        with override_settings(FIELD_ENCRYPTION_KEYS=[]), pytest.raises(ImproperlyConfigured):
            # when / then
            crypto.encrypt_json({"secret": "x"})
    finally:
        crypto.keys_forget()
