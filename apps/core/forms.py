"""Forms that refuse card numbers themselves: a field holding one (``apps.core.pan``) is a form
error on that field, the form is shown again with everything else as typed, and the card number
is not: its field comes back empty, so the page never echoes it.

A view whose forms are built this way says so (``card_numbers_refused_by_forms``; the admin's
add and change views through ``CardNumberFormAdminMixin``), and ``CardNumberFormMiddleware``
then leaves the values to the forms; every other form post is refused whole by the middleware."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django import forms

from apps.core.pan import find_card_number

CARD_NUMBER_FIELD_ERROR = "This looks like a card number: card numbers are never accepted here."

View = TypeVar("View", bound=Callable[..., Any])


class CardNumberRefusingFormMixin:
    """For a ``forms.Form`` or ``ModelForm``: card numbers in its fields are field errors (password
    fields excepted: they are only ever hashed) and are blanked in the bound data."""

    # What the form class it is mixed into has (for the type checker).
    data: Any
    files: Any
    fields: dict[str, forms.Field]
    is_bound: bool
    cleaned_data: dict[str, Any]
    _errors: Any
    error_class: Any
    add_prefix: Callable[[str], str]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.card_number_fields = self._card_number_fields_blank() if self.is_bound else []

    def _card_number_fields_blank(self) -> list[str]:
        found = []
        for name, field in self.fields.items():
            if isinstance(field.widget, forms.PasswordInput):
                continue
            key = self.add_prefix(name)
            value = field.widget.value_from_datadict(self.data, self.files, key)
            values = value if isinstance(value, list | tuple) else [value]
            if any(find_card_number(item) for item in values):
                found.append(key)
        if found:
            self.data = data = self.data.copy()
            for key in list(data):
                # The field's own key, or a part of it (a MultiWidget posts key_0, key_1, ...).
                if key in found or key.rpartition("_")[0] in found:
                    data[key] = ""
        return [name for name in self.fields if self.add_prefix(name) in found]

    def full_clean(self) -> None:
        super().full_clean()  # type: ignore[misc]
        for name in self.card_number_fields:
            self.cleaned_data.pop(name, None)
            self._errors[name] = self.error_class([CARD_NUMBER_FIELD_ERROR])


def card_number_refusing(form_class: type) -> type:
    """``form_class`` with ``CardNumberRefusingFormMixin`` (itself when it has it already)."""
    if issubclass(form_class, CardNumberRefusingFormMixin):
        return form_class
    return type(form_class.__name__, (CardNumberRefusingFormMixin, form_class), {})


def card_numbers_refused_by_forms(view: View) -> View:
    """Marks a view whose forms all refuse card numbers themselves (``CardNumberRefusingFormMixin``):
    the middleware leaves the posted values to them."""
    setattr(view, "card_numbers_refused_by_forms", True)  # noqa: B010 (a function attribute)
    return view
