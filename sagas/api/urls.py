"""The operators' saga routes (mounted under /api/)."""

from django.urls import path

from sagas.api import operators

urlpatterns = [
    path("sagas/", operators.SagaList.as_view(), name="saga-list"),
    path("sagas/<uuid:saga_id>/", operators.SagaDetail.as_view(), name="saga-detail"),
    path("sagas/<uuid:saga_id>/retry/", operators.SagaRetry.as_view(), name="saga-retry"),
    path(
        "sagas/<uuid:saga_id>/compensate/",
        operators.SagaCompensate.as_view(),
        name="saga-compensate",
    ),
]
