"""ASGI entry point: HTTP through Django, websockets through Channels (the dashboard's only)."""

import os

import django

from sagaproject.envfile import use_local_env_file

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sagaproject.settings")
use_local_env_file()
os.environ["SAGA_SERVER"] = "asgi"  # settings: pooled connections, see DATABASES
django.setup(set_prefix=False)  # as get_asgi_application() does

from sagaproject.handlers import ASGIHandler  # noqa: E402

django_asgi_app = ASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from sagas.dashboard.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Session cookie -> scope["user"]; a foreign Origin is refused before any consumer runs.
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
