"""What one seed's run found: filled by the harness (operations, faults, schedule) and by the
invariants' check (violations and counts)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SeedResult:
    seed: int
    operations: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    violations: list[dict] = field(default_factory=list)
    double_charges: int = 0
    stuck: int = 0
    ledger_verified: bool = True
    auto_refunded_late_charges: int = 0
    payments: int = 0
    charges: int = 0
    seconds: float = 0.0
    schedule: list[str] = field(default_factory=list)
    fault_log: list[str] = field(default_factory=list)

    @property
    def faults_injected(self) -> int:
        return sum(self.faults.values())

    def summary(self) -> dict:
        """What must be the same every time the seed runs (timings left out)."""
        return {
            "seed": self.seed,
            "operations": self.operations,
            "faults": self.faults,
            "violations": self.violations,
            "double_charges": self.double_charges,
            "stuck": self.stuck,
            "ledger_verified": self.ledger_verified,
            "auto_refunded_late_charges": self.auto_refunded_late_charges,
            "payments": self.payments,
            "charges": self.charges,
            "schedule": self.schedule,
            "fault_log": self.fault_log,
        }
