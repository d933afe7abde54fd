"""The signature verifier in the README works on what we send (so the docs cannot drift)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from apps.webhooks.outbound import signature_header

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_verify():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (source,) = [b for b in blocks if "def verify(" in b]
    namespace: dict = {"__name__": "readme_receiver"}  # not __main__: the server does not start
    exec(compile(source, "README.md", "exec"), namespace)
    return namespace["verify"]


def test_the_readme_verifier_accepts_our_signatures_and_nothing_else():
    verify = readme_verify()
    body = b'{"id":"evt_1","type":"payment.succeeded"}'
    now = int(time.time())

    assert verify(body, signature_header(body, ["whsec_abc"], now), "whsec_abc")
    assert verify(body, signature_header(body, ["whsec_new", "whsec_abc"], now), "whsec_abc")
    assert not verify(body, signature_header(body, ["whsec_abc"], now), "whsec_other")
    assert not verify(body + b" ", signature_header(body, ["whsec_abc"], now), "whsec_abc")
    assert not verify(body, signature_header(body, ["whsec_abc"], now - 301), "whsec_abc")
    assert not verify(body, "", "whsec_abc")
