"""apps.core.pan: the card-number rule, property by property (its docstring is the spec)."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.core.ids import ID_PREFIXES, new_id
from apps.core.pan import (
    REDACTED,
    card_number_path,
    card_scheme_iin,
    find_card_number,
    luhn_valid,
    redact_card_numbers,
)

# Test numbers from Stripe's and Adyen's documentation.
TEST_CARDS = {
    "visa": "4242424242424242",
    "visa_debit": "4000056655665556",
    "mastercard": "5555555555554444",
    "mastercard_2series": "2223003122003222",
    "amex": "378282246310005",
    "discover": "6011111111111117",
    "diners_14": "36227206271667",
    "jcb": "3566002020360505",
    "unionpay_19": "6205500000000000004",
}


def _check_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_valid(body + d):
            return d
    raise AssertionError("unreachable")


@st.composite
def card_numbers(draw) -> str:
    length = draw(st.integers(12, 19))
    first = draw(st.sampled_from("123456789"))
    rest = draw(st.text("0123456789", min_size=length - 2, max_size=length - 2))
    return first + rest + _check_digit(first + rest)


# The IINs of the card schemes, as the module docstring lists them.
SCHEME_IINS = [
    "4", "51", "55", "2221", "2720", "34", "37", "6011", "644", "649", "65", "3528", "3589", "36",
    "38", "300", "305", "62", "50", "56", "58", "67",
]  # fmt: skip


@st.composite
def scheme_card_numbers(draw, min_length: int = 13) -> str:
    """Luhn-valid numbers a card scheme issues: an IIN, 13 to 19 digits."""
    iin = draw(st.sampled_from(SCHEME_IINS))
    length = draw(st.integers(max(min_length, len(iin) + 1), 19))
    rest = draw(st.text("0123456789", min_size=length - len(iin) - 1, max_size=length - len(iin) - 1))
    return iin + rest + _check_digit(iin + rest)


SEPARATORS = {
    "spaced": " ",
    "dashed": "-",
    "double_spaced": "  ",
    "no_break_spaced": "\u00a0",
    "lines": "\n",
    "tabbed": "\t",
    "dotted": ".",
    "slashed": "/",
    "spaced_dash": " - ",
    "crlf": "\r\n",
}


@st.composite
def formatted(draw, number: str) -> str:
    style = draw(st.sampled_from(["plain", *SEPARATORS]))
    if style == "plain":
        return number
    sizes = draw(st.lists(st.integers(1, 6), min_size=1, max_size=19))
    groups, i = [], 0
    for size in sizes:
        if i >= len(number):
            break
        groups.append(number[i : i + size])
        i += size
    if i < len(number):
        groups.append(number[i:])
    if style == "dotted" and len(groups) == 2:
        return ". ".join(groups)  # one lone dot between two groups is a decimal number
    return SEPARATORS[style].join(groups)


# Text beside a card number: anything that ends (and starts) with neither a digit, a letter nor a
# separator, so the number is a run of its own.
_NEIGHBOUR_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_BOUNDARY = st.sampled_from(list("_:;,!?()[]{}\"'\\=+#\n\t"))


@given(number=card_numbers(), data=st.data())
def test_every_luhn_valid_number_is_found_whatever_its_format_and_neighbours(number, data):
    text = (
        data.draw(_NEIGHBOUR_TEXT)
        + data.draw(_BOUNDARY)
        + data.draw(formatted(number))
        + data.draw(_BOUNDARY)
        + data.draw(_NEIGHBOUR_TEXT)
    )
    assert find_card_number(text)
    assert find_card_number(number)


@given(number=card_numbers(), data=st.data())
def test_redaction_removes_the_number_and_keeps_the_rest(number, data):
    before, after = data.draw(st.text("abcxyz _:", max_size=10)), data.draw(st.text("abcxyz _:", max_size=10))
    text = f"{before}:{data.draw(formatted(number))}:{after}"

    redacted = redact_card_numbers(text)

    assert redacted == f"{before}:{REDACTED}:{after}"
    assert not find_card_number(redacted)


@given(number=card_numbers(), position=st.integers(0, 18), delta=st.integers(1, 9))
def test_one_wrong_digit_is_not_a_card_number(number, position, delta):
    position %= len(number)
    digit = (int(number[position]) + delta) % 10
    if position == 0 and digit == 0:
        digit = 1 if int(number[0]) != 1 else 2
    typo = number[:position] + str(digit) + number[position + 1 :]

    assert not find_card_number(typo)


@given(
    st.lists(st.text("0123456789", min_size=1, max_size=11), max_size=8),
    st.sampled_from(["ab", ":", "_", ",", "   ", "--", "x/"]),
)
def test_no_run_of_twelve_digits_means_no_card_number(chunks, glue):
    text = glue.join(chunks)
    assert not find_card_number(text)
    assert redact_card_numbers(text) == text


@given(
    number=scheme_card_numbers(),
    letter=st.sampled_from("xZéq"),
    side=st.sampled_from(["before", "after", "both"]),
)
def test_a_scheme_number_touching_a_letter_is_found(number, letter, side):
    text = {"before": letter + number, "after": number + letter, "both": letter + number + letter}[side]
    assert find_card_number(f"name: {text}@example.com")
    assert redact_card_numbers(text).count(REDACTED) == 1


@given(number=card_numbers(), letter=st.sampled_from("aZxé"), side=st.sampled_from(["before", "after"]))
def test_a_number_no_scheme_issues_touching_a_letter_is_part_of_a_word(number, letter, side):
    if len(number) >= 13 and card_scheme_iin(number):
        number = "9" + number[1:-1] + _check_digit("9" + number[1:-1])
    text = letter + number if side == "before" else number + letter
    assert not find_card_number(text)


@given(number=scheme_card_numbers(min_length=12).filter(lambda n: len(n) == 12), letter=st.sampled_from("xZ"))
def test_twelve_digits_touching_a_letter_are_too_few(number, letter):
    assert not find_card_number(letter + number)


@given(
    number=scheme_card_numbers(),
    head=st.text("0123456789abcdef", min_size=1, max_size=8),
    tail=st.text("0123456789abcdef", min_size=4, max_size=30),
    upper=st.booleans(),
)
def test_a_hex_digest_holding_a_scheme_number_is_not_a_card(number, head, tail, upper):
    head = "a" + head  # a letter on each side of the number's run
    tail = "f" + tail
    digest = head + number + tail
    if len(digest) < 20:
        digest += "0" * (20 - len(digest))
    assert not find_card_number(digest.upper() if upper else digest)
    assert not find_card_number(f"sha256={digest}, uuid={new_id('pay_')}")


@given(
    number=scheme_card_numbers(min_length=16).filter(lambda n: len(n) <= 20),
    prefix=st.sampled_from(sorted(ID_PREFIXES)),
)
def test_one_of_our_ids_holding_a_scheme_number_is_not_a_card(number, prefix):
    random_part = ("k" + number + "QzQzQzQzQz")[:24]
    assert not find_card_number(f"see {prefix}{random_part}")
    assert find_card_number(f"see xyz_{random_part}")  # not one of ours: a word with a card in it


def test_every_id_prefix_in_use_is_known_to_the_rule():
    used = set()
    for path in __import__("pathlib").Path("apps").rglob("*.py"):
        used |= set(re.findall(r"new_id\(\"([a-z]+_)\"\)", path.read_text()))
    assert used and used <= ID_PREFIXES


@pytest.mark.parametrize(
    "text",
    [
        "4242\u00a04242\u00a04242\u00a04242",
        "4242\n4242\n4242\n4242",
        "4242  4242  4242  4242",
        "4242.4242.4242.4242",
        "4242/4242/4242/4242",
        "4242 - 4242 - 4242 - 4242",
        "x4242424242424242y@example.com",
        "visa4111111111111111",
        "card 4242\u00a04242\u00a04242\u00a04242 thanks",
        "\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12\uff14\uff12",
        "\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662\u0664\u0662",
    ],
)
def test_the_ways_a_card_number_slipped_past_are_found(text):
    assert find_card_number(text)
    assert not find_card_number(redact_card_numbers(text))


@given(st.text("0123456789", min_size=20, max_size=40).filter(lambda s: s[0] != "0"))
def test_twenty_digits_in_one_block_are_too_long_to_be_a_card(run):
    assert not find_card_number(run)


@given(card_numbers().filter(lambda n: len(n) < 19))
def test_a_leading_zero_is_not_a_card_though_luhn_passes(number):
    assert luhn_valid("0" + number)
    assert not find_card_number("0" + number)


def test_eleven_digits_are_too_few():
    assert not find_card_number("42424242424")
    assert not find_card_number("4242 4242 424")


@pytest.mark.parametrize("number", TEST_CARDS.values(), ids=TEST_CARDS.keys())
@pytest.mark.parametrize("style", ["plain", "spaced", "dashed"])
def test_the_processors_test_cards_are_found(number, style):
    sep = {"plain": "", "spaced": " ", "dashed": "-"}[style]
    text = sep.join(number[i : i + 4] for i in range(0, len(number), 4))

    assert find_card_number(f"my card is {text}, exp 12/34")
    assert find_card_number(int(number))
    assert redact_card_numbers(f"card={text}") == f"card={REDACTED}"


@pytest.mark.parametrize(
    "text",
    [
        "550e8400-e29b-41d4-a716-446655440000",  # a UUID
        "pay_3kTm9x2QyR7bLw1ZpE4vNc8a",
        "+1 415 555 2671",
        "2026-12-03 12:33:50",
        "1767225600",  # unix seconds
        "order 0000000000000000",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "E3B0C44298FC1C1442424242424242429B934CA495991B7852B855",
        "550e8400-e29b-41d4-a716-424242424242",  # a UUID whose last group could pass
        "took 0.4242424242424242s",
        "1.4242424242424242",
        "at 1764790000.4242424242",
        "v1.2.3.4",
        "192.168.100.200",
    ],
)
def test_ordinary_values_are_not_card_numbers(text):
    assert not find_card_number(text)


def test_a_decimal_numbers_integer_part_is_looked_at_by_itself():
    assert find_card_number(4242424242424242.0)
    assert find_card_number("4242424242424242.50")
    assert not find_card_number("1764790000.4242424242")


def test_card_number_path_names_the_value_or_the_object_whose_key_holds_one():
    assert card_number_path({"amount": 100, "metadata": {"note": "4242 4242 4242 4242"}}) == (
        "metadata.note",
        False,
    )
    assert card_number_path({"splits": [{"vendor": "v"}, {"vendor": "5555555555554444"}]}) == (
        "splits[1].vendor",
        False,
    )
    assert card_number_path({"metadata": {"378282246310005": "x"}}) == ("metadata", True)
    assert card_number_path({"378282246310005": 1}) == ("", True)
    assert card_number_path({"n": 4242424242424242}) == ("n", False)
    assert card_number_path("4242424242424242") == ("", False)
    assert card_number_path({"a": [1, True, None, "x", 4.5, {"b": []}]}) is None


def test_card_number_path_is_safe_at_any_depth():
    deep: object = "4242424242424242"
    for _ in range(10_000):
        deep = [deep]
    assert card_number_path(deep) == ("[0]" * 10_000, False)


def _reference(text: str) -> bool:
    """The docstring's rule written the slow, obvious way."""
    words = [m.span() for m in re.finditer(r"[0-9A-Za-z]+", text)]
    uuids = [m.span() for m in re.finditer(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", text)]
    for match in re.finditer(r"(?<!\d)\d+(?:(?:\s{1,2}|\s{0,2}[-./]\s{0,2})\d+)*", text):
        start, end = match.span()
        groups = [(start + g.start(), start + g.end()) for g in re.finditer(r"\d+", match.group())]
        if re.fullmatch(r"\d+\.\d+", match.group()):  # a decimal number: its integer part alone
            groups, end = groups[:1], groups[0][1]
        for i in range(len(groups)):
            for j in range(i + 1, len(groups) + 1):
                lo, hi = groups[i][0], groups[j - 1][1]
                digits = "".join(
                    str(unicodedata.decimal(text[a:b][k])) for a, b in groups[i:j] for k in range(b - a)
                )
                if not (12 <= len(digits) <= 19 and digits[0] != "0" and luhn_valid(digits)):
                    continue
                if any(a < hi and b > lo for a, b in uuids):
                    continue
                touching = (i == 0 and start and text[start - 1].isalpha()) or (
                    j == len(groups) and end < len(text) and text[end].isalpha()
                )
                if touching:
                    if len(digits) < 13 or not card_scheme_iin(digits):
                        continue
                    a, b = next(((a, b) for a, b in words if a <= lo < b or a < hi <= b), (0, 0))
                    word = text[a:b]
                    if (
                        len(word) >= 20
                        and not word.isdigit()
                        and (re.fullmatch("[0-9a-f]+", word) or re.fullmatch("[0-9A-F]+", word))
                    ):
                        continue
                    ours = any(
                        text[:a].endswith(p) and not text[: a - len(p)][-1:].isalnum() for p in ID_PREFIXES
                    )
                    if len(word) == 24 and ours:
                        continue
                return True
    return False


@settings(max_examples=500)
@given(
    st.text("0123456789 -./\u00a0\nax\uff14", max_size=80)
    | st.lists(card_numbers(), max_size=3).map(" x ".join)
    | st.lists(scheme_card_numbers(), max_size=3).map("x".join)
)
def test_the_fast_check_agrees_with_the_rule_written_plainly(text):
    assert find_card_number(text) == _reference(text)
