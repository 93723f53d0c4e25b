"""URL routes: the REST API, OpenAPI, probes, metrics, the dashboard and the admin."""

from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.views import serve as serve_static
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

if not settings.STATIC_URL.startswith(("http://", "https://")):
    # daphne serves no files: the apps' static files (API docs assets, admin styles) come from
    # here, looked up in the installed apps only. A STATIC_URL on a CDN turns this off.
    urlpatterns.append(
        re_path(
            rf"^{settings.STATIC_URL.lstrip('/')}(?P<path>.+)$", serve_static, {"insecure": True}
        )
    )

# Errors Django answers itself come out in the API's error shape on /api/ paths.
handler400 = "sagas.api.errors.handler400"
handler403 = "sagas.api.errors.handler403"
handler404 = "sagas.api.errors.handler404"
handler500 = "sagas.api.errors.handler500"
