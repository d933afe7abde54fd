"""`make run` and `make test`: discover services, prepare the database, then run.

Discovery (``config.discovery``) runs here, before any Django settings load, and its answer is
exported as ``DATABASE_URL`` / ``REDIS_URL`` to every process started from here.

``python -m config.stack run``  migrate, demo, then web + worker + beat (restarted if they die) until Ctrl-C.
``python -m config.stack test [pytest args]``  prepare services, then pytest.
``python -m config.stack prepare``  only resolve and migrate (used by other targets).
``python -m config.stack chaos [args]``  prepare, then ``manage.py chaos`` (the fault-injection harness).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from config import discovery
from config.connections import ServiceError, parse_database_url
from config.supervisor import Supervisor

BASE = Path(__file__).resolve().parent.parent
PY = sys.executable


def _resolve_into_env() -> discovery.Resolved:
    try:
        # Children (web, worker, beat, pytest) inherit the same choice.
        resolved = discovery.resolve_into_environ()
        created = discovery.ensure_database(resolved.database_url)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(resolved.describe(), flush=True)
    if created:
        print(f"created database {parse_database_url(resolved.database_url).name}", flush=True)
    return resolved


def _manage(*args: str) -> None:
    result = subprocess.run([PY, "manage.py", *args], cwd=BASE)
    if result.returncode != 0:
        sys.exit(result.returncode)


def prepare() -> discovery.Resolved:
    resolved = _resolve_into_env()
    _manage("migrate_schemas", "--shared", "-v", "0")
    _manage("setup_platform")
    _manage("migrate_schemas", "--tenant", "--executor", "multiprocessing", "-v", "0")
    return resolved


def run() -> int:
    resolved = prepare()
    port = os.environ.get("PORT", "8000")
    _manage("setup_platform", "--demo", "--port", port)
    commands = {
        "web": [PY, "manage.py", "runserver", f"0.0.0.0:{port}", "--noreload"],
        "worker": [
            PY,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-l",
            "INFO",
            "--concurrency",
            "2",
            "-n",
            "worker@%h",
        ],
        "beat": [
            PY,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            "-l",
            "INFO",
            "--schedule",
            str(BASE / ".data" / "celerybeat-schedule"),
        ],
    }
    (BASE / ".data").mkdir(exist_ok=True)
    print(
        f"running web (:{port}), worker and beat; a child that dies is restarted; Ctrl-C stops them all",
        flush=True,
    )
    exit_code = Supervisor(commands, cwd=BASE).run_until_signalled()
    if "embedded" in (resolved.database_source, resolved.redis_source):
        # The next `make run` starts them again on the same .data/ (the data is kept).
        print("stopped embedded " + ", ".join(discovery.stop_embedded()), flush=True)
    return exit_code


def test(args: list[str]) -> int:
    resolved = _resolve_into_env()
    if resolved.redis_source != "REDIS_URL":
        # Keep the suite's queues and worker heartbeats apart from a `make run` on the same Redis.
        url = resolved.redis_url
        os.environ["REDIS_URL"] = (
            (url + "?db=15") if url.startswith("unix://") else url.rsplit("/", 1)[0] + "/15"
        )
    name = parse_database_url(resolved.database_url).name
    prefix = f"test_{name}_"
    discovery.drop_stale_test_databases(resolved.database_url, prefix)
    os.environ.setdefault("TEST_DATABASE_NAME", f"{prefix}{os.getpid()}")
    return subprocess.run([PY, "-m", "pytest", *args], cwd=BASE).returncode


def _development_dotenv() -> None:
    dotenv = BASE / ".env"
    if not dotenv.exists():
        dotenv.write_text(
            "# Written by make run / make test: this checkout runs in development mode.\n"
            "# Delete this file for production settings (then DJANGO_SECRET_KEY and\n"
            "# FIELD_ENCRYPTION_KEYS are required).\n"
            "DJANGO_DEBUG=1\n"
        )
        print("development mode: wrote .env (DJANGO_DEBUG=1); delete it for production settings", flush=True)


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "run"
    if cmd in ("run", "test", "chaos"):
        # `make run`, `make test` and `make chaos` are development: they say so in the checkout's
        # .env, so that `.venv/bin/python manage.py ...` works there afterwards too. Anything else
        # (a deployment has no .env) gets production settings unless DJANGO_DEBUG says otherwise
        # (tests that need production start a process with DJANGO_DEBUG=0).
        _development_dotenv()
        os.environ.setdefault("DJANGO_DEBUG", "1")
    if cmd == "run":
        return run()
    if cmd == "test":
        return test(argv[2:])
    if cmd == "prepare":
        prepare()
        return 0
    if cmd == "chaos":
        prepare()
        return subprocess.run([PY, "manage.py", "chaos", *argv[2:]], cwd=BASE).returncode
    print(f"usage: python -m config.stack run|test|prepare|chaos (got {cmd!r})", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
