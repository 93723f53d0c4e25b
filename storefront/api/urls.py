"""The REST API's routes (mounted under /api/)."""

from django.urls import path

from sagas.api import longpoll, operators, views

urlpatterns = [
    path("products/", views.ProductList.as_view(), name="product-list"),
    path("orders/", views.OrderList.as_view(), name="order-list"),
    path("orders/<uuid:order_id>/", longpoll.order_detail, name="order-detail"),
    path("sagas/", operators.SagaList.as_view(), name="saga-list"),
    path("sagas/<uuid:saga_id>/", operators.SagaDetail.as_view(), name="saga-detail"),
    path("sagas/<uuid:saga_id>/retry/", operators.SagaRetry.as_view(), name="saga-retry"),
    path(
        "sagas/<uuid:saga_id>/compensate/",
        operators.SagaCompensate.as_view(),
        name="saga-compensate",
    ),
]
