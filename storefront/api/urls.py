"""The storefront's routes (mounted under /api/): the catalogue and the orders."""

from django.urls import path

from storefront.api import longpoll, views

urlpatterns = [
    path("products/", views.ProductList.as_view(), name="product-list"),
    path("orders/", views.OrderList.as_view(), name="order-list"),
    path("orders/<uuid:order_id>/", longpoll.order_detail, name="order-detail"),
]
