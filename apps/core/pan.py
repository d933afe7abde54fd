"""Card numbers (PANs) in free text: how the platform recognises one, so it can refuse it at the
edge (API, admin, public pages) and redact it from logs.

The rule, which the tests check property by property:

- A **digit** is any Unicode decimal digit (``4``, a full-width or an Arabic-Indic four), read as its value.
- A **digit run** is a maximal stretch of digits in which a separator may stand between groups of
  digits: one or two whitespace characters of any kind (space, no-break space, tab, newline), or
  one of ``-`` ``.`` ``/`` with up to two whitespace characters on either side
  (``4242 4242 4242 4242``, ``4242\u00a04242...``, ``4242.4242.4242.4242``, ``4242 - 4242 ...``,
  ``3782 822463 10005``). Anything else (three spaces, ``--``, ``,``, ``:``, a letter) ends the run.
  A run that is two groups joined by a single ``.`` is a decimal number (``1764790000.123456``, a
  duration, a float): only its integer part is looked at, by itself.
- A **candidate** is the run itself or a stretch of its whole groups with 12 to 19 digits, not
  starting with ``0`` (no card scheme issues numbers in ISO/IEC 7812's industry 0), passing the
  Luhn check. Separated groups are looked at one stretch at a time, so a card number written in
  groups is found even beside other numbers (``order 17 4242 4242 4242 4242``). A run of 20 digits
  without separators is not a card number: it is too long to be one.
- A candidate that **touches a letter** (it starts the run and a letter comes just before it, or
  ends it and a letter comes just after: ``x4242424242424242y``, ``visa4111111111111111``) is a
  card number only when it also has 13 to 19 digits and starts with a card scheme's IIN (Visa 4;
  Mastercard 51-55, 2221-2720; Amex 34, 37; Discover 6011, 644-649, 65; JCB 3528-3589; Diners 36,
  38, 300-305; UnionPay 62; Maestro 50, 56-58, 6), and the word it is part of (the maximal
  ``[0-9A-Za-z]`` run around it) is not an identifier: 20 or more characters of hexadecimal in
  one case with a letter among them (a digest, a signature), or the random part of one of our own
  ids (``pay_`` + 24 characters: ``apps.core.ids.ID_PREFIXES``). An underscore, a colon, a quote
  or other punctuation is not a letter, so ``pm_4242424242424242`` is a card number.
- A candidate inside a UUID (``550e8400-e29b-41d4-a716-446655440000``) is not a card number.

About one Luhn-valid run in ten of 12 to 19 digits is not a card (a 13-digit millisecond timestamp,
a long order number): refusing those is the price of never storing a card number; the error
explains it.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from itertools import accumulate

from apps.core.ids import ID_PREFIXES, ID_RANDOM_LENGTH

MIN_DIGITS = 12
MAX_DIGITS = 19
MIN_DIGITS_BESIDE_LETTER = 13
REDACTED = "[card number redacted]"

_SEPARATOR = r"(?:\s{1,2}|\s{0,2}[-./]\s{0,2})"
_RUN = re.compile(rf"(?<!\d)\d+(?:{_SEPARATOR}\d+)*")
_GROUP = re.compile(r"\d+")
_DECIMAL = re.compile(r"\d+\.\d+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX_ONE_CASE = re.compile(r"[0-9a-f]+|[0-9A-F]+")
_WORD_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_MIN_DIGEST_LENGTH = 20
_LONGEST_PREFIX = max(len(prefix) for prefix in ID_PREFIXES)


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


def card_scheme_iin(digits: str) -> bool:
    """Whether ASCII ``digits`` start with the IIN of a card scheme (the module docstring's list)."""
    first = digits[0]
    if first in "46":  # Visa; Discover, UnionPay, Maestro 6x
        return True
    if first == "5":  # Maestro 50, 56-58; Mastercard 51-55
        return digits[1] != "9"
    if first == "3":  # Amex, Diners, JCB
        return (
            digits[1] in "4678"
            or (digits[1] == "0" and digits[2] in "012345")
            or 3528 <= int(digits[:4]) <= 3589
        )
    if first == "2":  # Mastercard's 2-series
        return 2221 <= int(digits[:4]) <= 2720
    return False


def _ascii_digits(text: str) -> str:
    if text.isascii():
        return text
    return "".join(chr(48 + unicodedata.decimal(char)) for char in text)


# Luhn contributions of a digit character: as is, and doubled (with 9 taken off above 9).
_PLAIN = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED = bytes.maketrans(b"0123456789", bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]))


def _is_identifier_word(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` lies in a word that is an identifier: a hex digest in one case,
    or the random part of one of our ids."""
    left, right = start, end
    while left > 0 and text[left - 1] in _WORD_CHARS:
        left -= 1
    while right < len(text) and text[right] in _WORD_CHARS:
        right += 1
    word = text[left:right]
    if len(word) >= _MIN_DIGEST_LENGTH and _HEX_ONE_CASE.fullmatch(word) and not word.isdigit():
        return True
    if len(word) == ID_RANDOM_LENGTH and left > 0 and text[left - 1] == "_":
        head = left - 1
        while head > 0 and left - head < _LONGEST_PREFIX and text[head - 1].isalpha():
            head -= 1
        if text[head:left] in ID_PREFIXES and (head == 0 or text[head - 1] not in _WORD_CHARS):
            return True
    return False


def _in_uuid(text: str, start: int, end: int) -> bool:
    window = max(0, start - 36)
    return any(
        m.start() + window < end and m.end() + window > start for m in _UUID.finditer(text[window : end + 36])
    )


def _is_card(text: str, digits: str, span: tuple[int, int], edges: tuple[bool, bool]) -> bool:
    """Whether a Luhn-valid stretch of 12 to 19 digits (``digits``, at ``span`` in ``text``) not
    starting with 0 is a card number; ``edges`` say whether it touches a letter before and after."""
    if any(edges):
        if len(digits) < MIN_DIGITS_BESIDE_LETTER or not card_scheme_iin(digits):
            return False
        if _is_identifier_word(text, *span):
            return False
    return not _in_uuid(text, *span)


def _run_holds_card(text: str, run: re.Match[str]) -> bool:
    """Whether the run, or a stretch of its whole groups, is a card number. Linear in the run's
    length: prefix sums make each stretch's Luhn check O(1)."""
    start, end = run.span()
    before = start > 0 and text[start - 1].isalpha()
    after = end < len(text) and text[end].isalpha()
    spans = [m.span() for m in _GROUP.finditer(text, start, end)]
    if len(spans) == 2 and _DECIMAL.fullmatch(text, start, end):
        spans, end, after = spans[:1], spans[0][1], False  # a decimal number's integer part
    if len(spans) == 1:
        digits = _ascii_digits(text[start:end])
        return (
            MIN_DIGITS <= len(digits) <= MAX_DIGITS
            and digits[0] != "0"
            and luhn_valid(digits)
            and _is_card(text, digits, (start, end), (before, after))
        )
    digits = _ascii_digits("".join(text[s:e] for s, e in spans))
    bounds = [0, *accumulate(e - s for s, e in spans)]  # where each group starts, in digits
    raw = digits.encode()
    plain, doubled = raw.translate(_PLAIN), raw.translate(_DOUBLED)
    # A stretch's last digit is not doubled, so the positions of its end's parity are: sums for a
    # stretch ending at an even offset (doubled on even positions) and at an odd one.
    even_end, odd_end = bytearray(plain), bytearray(plain)
    even_end[0::2], odd_end[1::2] = doubled[0::2], doubled[1::2]
    sums = ([0, *accumulate(even_end)], [0, *accumulate(odd_end)])
    last = len(spans)
    for first in range(len(spans)):
        lo_digit = bounds[first]
        if digits[lo_digit] == "0":
            continue
        lo = bisect_left(bounds, lo_digit + MIN_DIGITS, first + 1)
        for stop in range(lo, bisect_right(bounds, lo_digit + MAX_DIGITS, lo)):
            hi_digit = bounds[stop]
            prefix = sums[hi_digit % 2]
            if (prefix[hi_digit] - prefix[lo_digit]) % 10:
                continue
            span = (spans[first][0], spans[stop - 1][1])
            edges = (before and first == 0, after and stop == last)
            if _is_card(text, digits[lo_digit:hi_digit], span, edges):
                return True
    return False


def _card_runs(text: str) -> Iterator[re.Match[str]]:
    for match in _RUN.finditer(text):
        if match.end() - match.start() >= MIN_DIGITS and _run_holds_card(text, match):
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
