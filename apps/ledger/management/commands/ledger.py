"""``python manage.py ledger <post|balances|seal|verify|replay|digest|prove> --tenant <schema>``.

Exit 0 when all is well, 1 with a one-line reason otherwise."""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import tenant_context
from tqdm import tqdm

from apps.core.money import MoneyError, format_amount
from apps.ledger import integrity, selectors, services
from apps.ledger.errors import LedgerError
from apps.ledger.models import ChainLink, LedgerEvent
from apps.tenants.cli import marketplace_named


class Command(BaseCommand):
    help = "Operate a marketplace's ledger: post, balances, seal, verify, replay, digest, prove."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)

        def with_tenant(p):
            p.add_argument("--tenant", required=True, help="the marketplace's slug (schema)")
            return p

        post = with_tenant(sub.add_parser("post", help="record an operator's manual adjustment"))
        post.add_argument("--debit", required=True)
        post.add_argument("--credit", required=True)
        post.add_argument("--amount", required=True, help="integer minor units, e.g. 1234 for 12.34 USD")
        post.add_argument("--currency", required=True)
        post.add_argument("--reason", required=True)
        post.add_argument("--idempotency-key")
        post.add_argument("--actor", default="cli")
        bal = with_tenant(sub.add_parser("balances", help="current balances"))
        bal.add_argument("--json", action="store_true")
        bal.add_argument("--currency")
        with_tenant(sub.add_parser("seal", help="seal pending events now"))
        ver = with_tenant(sub.add_parser("verify", help="check chain, seals, double entry, rules, balances"))
        ver.add_argument("--digest", help="a published digest (JSON) to check the ledger against")
        with_tenant(sub.add_parser("replay", help="rebuild balances from events"))
        with_tenant(sub.add_parser("digest", help="print the latest sealed digest as JSON"))
        prove = with_tenant(
            sub.add_parser(
                "prove",
                help="inclusion proof of one sealed event (JSON)",
                description="Inclusion proof of one sealed event: its hash, leaf index and Merkle path in "
                "its block, and the block hashes up to the latest digest. The path is in the block's tree "
                "format, `merkle_version`: 2 (every seal since the format was versioned) is RFC 6962 "
                "(leaf = SHA-256(0x00 || event hash), node = SHA-256(0x01 || left || right), no duplicated "
                "odd leaf; the path is a list of sibling hashes); 1 (older seals) hashes hex strings joined "
                "by '|' with [side, hash] steps. Fails (exit 1) for an unknown or not yet sealed event.",
            )
        )
        prove.add_argument("--event", required=True, help="the event's public id (evt_...)")

    def handle(self, *args, **opts):
        tenant = marketplace_named(opts["tenant"])
        try:
            with tenant_context(tenant):
                getattr(self, "do_" + opts["action"])(opts)
        except (LedgerError, MoneyError) as exc:
            raise CommandError(str(exc)) from None

    def _progress(self, total: int, desc: str):
        return tqdm(total=total, desc=desc, unit="ev", file=sys.stderr, disable=total < 1000, mininterval=0.5)

    def do_post(self, opts):
        try:
            amount = int(opts["amount"])
        except ValueError:
            raise CommandError(
                f"amount must be an integer number of minor units, got {opts['amount']!r}"
            ) from None
        recorded = services.ledger_post_manual(
            debit=opts["debit"],
            credit=opts["credit"],
            amount=amount,
            currency=opts["currency"],
            reason=opts["reason"],
            actor=opts["actor"],
            idempotency_key=opts["idempotency_key"],
        )
        verb = (
            "recorded" if recorded.created else "already recorded (same idempotency key); nothing new posted:"
        )
        cur = recorded.event.payload["currency"]
        self.stdout.write(
            f"{verb} {recorded.event.public_id}: Dr {opts['debit']} / Cr {opts['credit']} "
            f"{format_amount(amount, cur)}"
        )

    def do_balances(self, opts):
        rows = selectors.balances_list(currency=opts.get("currency"))
        if opts["json"]:
            self.stdout.write(
                json.dumps([{k: r[k] for k in ("account", "currency", "balance")} for r in rows])
            )
            return
        for r in rows:
            self.stdout.write(
                f"{r['account']:<45} {r['currency']}  {r['balance']:>16}  "
                f"({format_amount(r['balance'], r['currency'])})"
            )

    def do_seal(self, opts):
        bar = self._progress(LedgerEvent.objects.filter(chain_link__isnull=True).count(), "sealing")
        result = integrity.ledger_seal(progress=bar.update)
        bar.close()
        digest = result.digest or {}
        self.stdout.write(
            f"sealed {result.events} events in {result.blocks} blocks; "
            f"latest block {digest.get('block', '-')} {digest.get('hash', '-')}"
        )

    def do_verify(self, opts):
        digest = None
        if opts.get("digest"):
            try:
                digest = json.loads(opts["digest"])
            except json.JSONDecodeError:
                digest = None
            if not isinstance(digest, dict):
                raise CommandError("--digest must be the JSON printed by `ledger digest`")
        bar = self._progress(ChainLink.objects.count(), "verifying")
        report = integrity.ledger_verify(progress=bar.update, digest=digest)
        bar.close()
        if not report.ok:
            raise CommandError(f"verify failed: {report.problems[0]}")
        self.stdout.write(
            f"ok: {report.events} events, {report.sealed} sealed; chain, seals, double entry, "
            "postings and balances all check out"
        )

    def do_replay(self, opts):
        bar = self._progress(LedgerEvent.objects.count(), "replaying")
        result = integrity.ledger_replay(progress=bar.update)
        bar.close()
        self.stdout.write(f"replayed {result.events} events into {len(result.balances)} balances")

    def do_digest(self, opts):
        digest = integrity.ledger_digest()
        if digest is None:
            raise CommandError("nothing is sealed yet; run `ledger seal` first")
        self.stdout.write(json.dumps(digest))

    def do_prove(self, opts):
        try:
            self.stdout.write(json.dumps(integrity.ledger_prove(public_id=opts["event"])))
        except LookupError as exc:
            raise CommandError(str(exc)) from None
