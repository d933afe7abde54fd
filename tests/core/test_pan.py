"""apps.core.pan: the card-number rule, property by property (its docstring is the spec)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.core.pan import REDACTED, card_number_path, find_card_number, luhn_valid, redact_card_numbers

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


@st.composite
def formatted(draw, number: str) -> str:
    style = draw(st.sampled_from(["plain", "spaced", "dashed"]))
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
    return (" " if style == "spaced" else "-").join(groups)


# Text beside a card number: anything that ends (and starts) with neither a digit, a letter nor a
# separator, so the number is a run of its own.
_NEIGHBOUR_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
_BOUNDARY = st.sampled_from(list("_:;,.!?()[]{}\"'/\\=+#\n\t"))


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


@given(st.lists(st.text("0123456789", min_size=1, max_size=11), max_size=8), st.sampled_from("ab:/._"))
def test_no_run_of_twelve_digits_means_no_card_number(chunks, glue):
    text = glue.join(chunks)
    assert not find_card_number(text)
    assert redact_card_numbers(text) == text


@given(number=card_numbers(), letter=st.sampled_from("aZxé"), side=st.sampled_from(["before", "after"]))
def test_a_run_touching_a_letter_is_part_of_a_word(number, letter, side):
    text = letter + number if side == "before" else number + letter
    assert not find_card_number(text)


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
    ],
)
def test_ordinary_values_are_not_card_numbers(text):
    assert not find_card_number(text)


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
    for match in re.finditer(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*(?![0-9])", text):
        start, end = match.span()
        if (start and text[start - 1].isalpha()) or (end < len(text) and text[end].isalpha()):
            continue
        groups = re.split(r"[ -]", match.group())
        for i in range(len(groups)):
            for j in range(i + 1, len(groups) + 1):
                digits = "".join(groups[i:j])
                if 12 <= len(digits) <= 19 and digits[0] != "0" and luhn_valid(digits):
                    return True
    return False


@settings(max_examples=500)
@given(st.text("0123456789 -- a", max_size=80) | st.lists(card_numbers(), max_size=3).map(" x ".join))
def test_the_fast_check_agrees_with_the_rule_written_plainly(text):
    assert find_card_number(text) == _reference(text)
