"""URL routes: the REST API, OpenAPI, probes, metrics, the dashboard and the admin. Static files
never reach these: WhiteNoise answers them first (settings, MIDDLEWARE)."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from sagas.api.errors import no_such_endpoint
from sagas.api.public import Metrics
from sagas.health import healthz, readyz

urlpatterns = [
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/", include("storefront.api.urls")),
    path("api/", include("sagas.api.urls")),
    re_path(r"^api/", no_such_endpoint),  # after every API route: a JSON 404, DEBUG or not
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", Metrics.as_view(), name="prometheus-django-metrics"),
    path("dashboard/", include("sagas.dashboard.urls")),
    path("admin/", admin.site.urls),
]

# Errors Django answers itself come out in the API's error shape on /api/ paths.
handler400 = "sagas.api.errors.handler400"
handler403 = "sagas.api.errors.handler403"
handler404 = "sagas.api.errors.handler404"
handler500 = "sagas.api.errors.handler500"
