"""Serializer fields for the API's conventions: integer minor units, lower-case currencies,
unix timestamps, blank-as-null strings, constant ``object`` names."""

from __future__ import annotations

import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.money import MoneyError, normalize_currency

MAX_AMOUNT = 2**63 - 1
_DIGITS = re.compile(r"^-?[0-9]{1,19}$")


@extend_schema_field({"type": "integer", "format": "int64", "minimum": 1, "example": 2000})
class AmountField(serializers.Field):
    """A positive integer of minor units. JSON numbers must be integers (1000.0 is refused);
    form-encoded digits are accepted."""

    default_error_messages = {
        "invalid": "Must be an integer number of minor units (e.g. 2000 for 20.00).",
        "min_value": "Must be at least 1.",
        "max_value": "Is too large.",
    }

    def to_internal_value(self, data):
        if isinstance(data, str) and _DIGITS.match(data.strip()):
            data = int(data.strip())
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        if data < 1:
            self.fail("min_value")
        if data > MAX_AMOUNT:
            self.fail("max_value")
        return data

    def to_representation(self, value):
        return int(value)


@extend_schema_field({"type": "string", "pattern": "^[a-z]{3}$", "example": "usd"})
class CurrencyField(serializers.Field):
    """ISO 4217, any case in; upper case inside; lower case out."""

    def to_internal_value(self, data):
        try:
            return normalize_currency(data)
        except MoneyError:
            raise serializers.ValidationError(
                f"Unknown currency {data!r}.", code="parameter_invalid"
            ) from None

    def to_representation(self, value):
        return str(value).lower()


@extend_schema_field(OpenApiTypes.INT)
class TimestampField(serializers.ReadOnlyField):
    def to_representation(self, value):
        return int(value.timestamp())


@extend_schema_field({"type": "string", "nullable": True})
class BlankAsNullField(serializers.ReadOnlyField):
    def to_representation(self, value):
        return value or None


@extend_schema_field({"type": "object", "additionalProperties": True, "nullable": True})
class EmptyAsNullObjectField(serializers.ReadOnlyField):
    def to_representation(self, value):
        return value or None


@extend_schema_field({"type": "string"})
class ConstantField(serializers.ReadOnlyField):
    def __init__(self, value: str, **kwargs):
        self.value = value
        kwargs["source"] = "*"
        super().__init__(**kwargs)

    def to_representation(self, value):
        return self.value


class MetadataField(serializers.DictField):
    """Up to 50 string values under keys of at most 40 characters (Stripe's limits)."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.CharField(max_length=500, allow_blank=True), **kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if len(value) > 50:
            raise serializers.ValidationError("At most 50 keys.")
        if any(len(str(k)) > 40 or not str(k) for k in value):
            raise serializers.ValidationError("Keys must be 1 to 40 characters.")
        if any("\x00" in str(k) for k in value):
            raise serializers.ValidationError("Keys must not contain null characters.")
        return value
