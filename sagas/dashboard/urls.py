"""The dashboard's pages (mounted at /dashboard/)."""

from django.urls import path

from sagas.dashboard import views

urlpatterns = [
    path("", views.overview, name="dashboard"),
    path("sagas/<uuid:saga_id>/", views.saga_detail, name="dashboard-saga"),
    path(
        "sagas/<uuid:saga_id>/retry/",
        views.saga_action,
        {"action": "retry"},
        name="dashboard-saga-retry",
    ),
    path(
        "sagas/<uuid:saga_id>/compensate/",
        views.saga_action,
        {"action": "compensate"},
        name="dashboard-saga-compensate",
    ),
]
