"""Vendor pages, under ``/vendors/`` on each marketplace's domain."""

from django.urls import path

from apps.vendors import views

app_name = "vendors"
urlpatterns = [
    path("invite/<str:token>", views.invite, name="invite"),
    path("onboarding/continue", views.onboarding_continue, name="onboarding_continue"),
    path("onboarding/simulated", views.onboarding_simulated, name="onboarding_simulated"),
    path("onboarding/status", views.onboarding_status, name="onboarding_status"),
    path("onboarding/refresh/<str:token>", views.onboarding_refresh, name="onboarding_refresh"),
    path("onboarding/return/<str:token>", views.onboarding_return, name="onboarding_return"),
    path("login", views.login, name="login"),
    path("login/<str:token>", views.login_confirm, name="login_confirm"),
    path("logout", views.logout, name="logout"),
    path("dashboard", views.dashboard, name="dashboard"),
    path("dashboard/stripe", views.express_dashboard, name="express_dashboard"),
]
