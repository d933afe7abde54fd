from django.urls import path, re_path

from apps.api import errors, views

urlpatterns = [
    path("v1/account", views.account, name="api-account"),
    re_path(r"^.*$", errors.api_not_found),
]
