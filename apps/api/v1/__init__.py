"""Version 1 of the storefront API: one module per resource (serializers and views together)."""
