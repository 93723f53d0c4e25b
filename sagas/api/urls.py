from django.urls import path

from sagas.api import views

urlpatterns = [
    path("products/", views.ProductList.as_view(), name="product-list"),
    path("orders/", views.OrderList.as_view(), name="order-list"),
    path("orders/<str:order_id>/", views.OrderDetail.as_view(), name="order-detail"),
]
