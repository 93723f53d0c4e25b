"""Websocket routes: the dashboard, and a clean refusal for every other path."""

from django.urls import re_path

from sagas.dashboard.consumer import DashboardConsumer, Refuse

websocket_urlpatterns = [
    re_path(r"^ws/dashboard/$", DashboardConsumer.as_asgi()),
    re_path(r"", Refuse.as_asgi()),
]
