from django.db import connection
from django.shortcuts import render


def home(request):
    tenant = getattr(request, "tenant", None)
    is_public = getattr(connection, "schema_name", "public") == "public"
    return render(request, "home.html", {"tenant": tenant, "is_public": is_public})
