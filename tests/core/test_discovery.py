from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.support import BASE


def run(args, env_extra, timeout=120):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, *args], cwd=BASE, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_unreachable_database_url_is_a_clear_error():
    result = run(["manage.py", "check"], {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"})

    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "error: DATABASE_URL postgresql://postgres@127.0.0.1:1/nowhere does not answer"
    )


def test_unreachable_redis_url_is_a_clear_error():
    result = run(["-m", "config.discovery", "check"], {"REDIS_URL": "redis://127.0.0.1:1/0"})

    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: REDIS_URL redis://127.0.0.1:1/0 does not answer")


def test_local_services_are_chosen_when_they_answer():
    result = run(["-m", "config.discovery", "check"], {})
    assert result.returncode == 0, result.stderr
    assert "PostgreSQL from local" in result.stdout and "Redis from local" in result.stdout


@pytest.mark.slow
def test_embedded_default_when_nothing_answers():
    # Not under pytest's tmp_path: as root, pgserver runs PostgreSQL as its own user and opens the
    # folders above its data to it, and another pytest session starting meanwhile closes
    # /tmp/pytest-of-root again (0700), which would lock that user out mid-run.
    data = tempfile.mkdtemp(prefix="discovery-embedded-")
    env = {"LOCAL_POSTGRES_ADDR": "127.0.0.1:1", "LOCAL_REDIS_ADDR": "127.0.0.1:1", "DATA_DIR": data}
    try:
        result = run(["-m", "config.discovery", "check"], env, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "PostgreSQL from embedded" in result.stdout
        assert "Redis from embedded" in result.stdout
        # a second resolution reuses the running servers
        again = run(["-m", "config.discovery", "check"], env, timeout=120)
        assert again.returncode == 0 and "embedded" in again.stdout
    finally:
        down = run(["-m", "config.discovery", "down"], env)
        shutil.rmtree(data, ignore_errors=True)
        assert down.returncode == 0


def test_settings_read_the_environment_and_probe_nothing():
    # given no URLs and nothing answering where discovery would look
    env = {
        "DJANGO_DEBUG": "1",
        "DJANGO_DOTENV": "0",
        "LOCAL_POSTGRES_ADDR": "127.0.0.1:1",
        "LOCAL_REDIS_ADDR": "127.0.0.1:1",
    }
    code = (
        "import os, sys; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; "
        "from django.conf import settings; "
        "print(settings.DATABASE_URL, settings.REDIS_URL, 'config.discovery' in sys.modules)"
    )

    # when the settings load
    result = run(["-c", code], env)

    # then they take the documented defaults, without discovery (no probe, no embedded server)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "postgresql://127.0.0.1:5432/marketplace",
        "redis://127.0.0.1:6379/0",
        "False",
    ]


def test_manage_py_discovers_services_before_the_settings_load():
    code = "from django.conf import settings; print(settings.DATABASE_URL, settings.REDIS_URL)"

    result = run(["manage.py", "shell", "-c", code], {"DJANGO_DEBUG": "1"})

    assert result.returncode == 0, result.stderr
    user = os.environ.get("PGUSER", "postgres")
    # (the last line: `shell` may first say how many objects it imported)
    assert result.stdout.strip().splitlines()[-1].split() == [
        f"postgresql://{user}@127.0.0.1:5432/marketplace",
        "redis://127.0.0.1:6379/0",
    ]
