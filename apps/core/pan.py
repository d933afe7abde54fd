"""Card numbers (PANs) in free text: how the platform recognises one, so it can refuse it at the
edge (API, admin, public pages) and redact it from logs.

The rule, which the tests check property by property:

- A **digit run** is a maximal stretch of ASCII digits in which single spaces or single dashes
  may separate groups of digits (``4242424242424242``, ``4242 4242 4242 4242``,
  ``4242-4242-4242-4242``, ``3782 822463 10005``). Two separators in a row, or any other
  character, end the run.
- A run that touches a letter on either side is part of a word or an identifier (a UUID, a hex
  digest, one of our own ``pay_3kTm9...`` ids) and is not a card number; an underscore, a
  colon, a quote or any other punctuation is not a letter, so ``pm_4242424242424242`` is one.
- A run holds a card number when the run itself, or a stretch of its whole groups, has 12 to 19
  digits, does not start with ``0`` (no card scheme issues numbers in ISO/IEC 7812's industry 0)
  and passes the Luhn check. A run of 20 digits without separators is not a card number: it is too
  long to be one. Separated groups are looked at one stretch at a time, so a card number written
  in groups is found even beside other numbers (``order 17 4242 4242 4242 4242``).

About one Luhn-valid run in ten of 12 to 19 digits is not a card (a 13-digit millisecond timestamp,
a long order number): refusing those is the price of never storing a card number; the error
explains it. Non-ASCII digits are not looked at.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import accumulate

MIN_DIGITS = 12
MAX_DIGITS = 19
REDACTED = "[card number redacted]"

_RUN = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*(?![0-9])")
_SEPARATOR = re.compile(r"[ -]")


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check over a string of ASCII digits."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _is_card_digits(digits: str) -> bool:
    return MIN_DIGITS <= len(digits) <= MAX_DIGITS and digits[0] != "0" and luhn_valid(digits)


# Luhn contributions of a digit character: as is, and doubled (with 9 taken off above 9).
_PLAIN = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED = bytes.maketrans(b"0123456789", bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]))


def _run_holds_card(run: str) -> bool:
    """Whether the run, or a stretch of its whole groups, is a card number. Linear in the run's
    length: prefix sums make each stretch's Luhn check O(1)."""
    groups = _SEPARATOR.split(run)
    if len(groups) == 1:
        return _is_card_digits(run)
    digits = "".join(groups)
    bounds = [0, *accumulate(len(group) for group in groups)]  # where each group starts
    raw = digits.encode()
    plain, doubled = raw.translate(_PLAIN), raw.translate(_DOUBLED)
    # A stretch's last digit is not doubled, so the positions of its end's parity are: sums for a
    # stretch ending at an even offset (doubled on even positions) and at an odd one.
    even_end, odd_end = bytearray(plain), bytearray(plain)
    even_end[0::2], odd_end[1::2] = doubled[0::2], doubled[1::2]
    sums = ([0, *accumulate(even_end)], [0, *accumulate(odd_end)])
    for first in range(len(groups)):
        start = bounds[first]
        if digits[start] == "0":
            continue
        lo = bisect_left(bounds, start + MIN_DIGITS, first + 1)
        for end in bounds[lo : bisect_right(bounds, start + MAX_DIGITS, lo)]:
            prefix = sums[end % 2]
            if (prefix[end] - prefix[start]) % 10 == 0:
                return True
    return False


def _card_runs(text: str) -> Iterator[re.Match[str]]:
    for match in _RUN.finditer(text):
        start, end = match.span()
        if end - start < MIN_DIGITS:
            continue
        if (start > 0 and text[start - 1].isalpha()) or (end < len(text) and text[end].isalpha()):
            continue
        if _run_holds_card(match.group()):
            yield match


def find_card_number(value: object) -> bool:
    """Whether ``value`` (a string, or a number as its decimal text) holds a card number by the
    module's rule. Booleans, None and other types hold none."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        value = repr(value)
    if not isinstance(value, str) or len(value) < MIN_DIGITS:
        return False
    return next(_card_runs(value), None) is not None


def redact_card_numbers(text: str) -> str:
    """``text`` with every digit run holding a card number replaced by ``REDACTED``; the rest of
    the text is unchanged."""
    if len(text) < MIN_DIGITS:
        return text
    out, last = [], 0
    for match in _card_runs(text):
        out.append(text[last : match.start()])
        out.append(REDACTED)
        last = match.end()
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def card_number_path(value: object) -> tuple[str, bool] | None:
    """The first place in a JSON-like ``value`` (dicts, lists, strings, numbers) holding a card
    number, as ``(path, in_key)``: a dotted path with list indexes in brackets
    (``metadata.note``, ``splits[0].vendor``; ``""`` for the value itself) and whether it is a key
    of the object at that path (the key is then not named: naming it would repeat the number).
    None when there is none. Iterative, so any depth is safe."""
    stack: list[tuple[str, object]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            children = []
            for key, child in item.items():
                if find_card_number(key):
                    return path, True
                children.append((f"{path}.{key}" if path else str(key), child))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(reversed([(f"{path}[{i}]", child) for i, child in enumerate(item)]))
        elif find_card_number(item):
            return path, False
    return None


def redact_card_numbers_in(value: object) -> object:
    """A copy of a JSON-like ``value`` with card numbers redacted from every string (keys
    included). Numbers are left as they are: they are our own amounts and timestamps, and a
    string in their place would break the shape readers rely on."""
    if isinstance(value, str):
        return redact_card_numbers(value)
    if isinstance(value, dict):
        return {
            redact_card_numbers(k) if isinstance(k, str) else k: redact_card_numbers_in(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_card_numbers_in(item) for item in value]
    return value
