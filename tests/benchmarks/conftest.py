import os

import pytest


def report(title: str, rows: list[tuple[str, str]]) -> None:
    """Print one benchmark's figures with its baseline (read by humans and by the closing notes)."""
    width = max(len(k) for k, _ in rows)
    print(f"\n== {title} (cores: {os.cpu_count()})")
    for key, value in rows:
        print(f"   {key.ljust(width)}  {value}")


@pytest.fixture
def bench_report():
    return report
