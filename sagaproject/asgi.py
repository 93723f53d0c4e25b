"""ASGI entry point: HTTP through Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

from sagaproject.envfile import use_local_env_file

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sagaproject.settings")
use_local_env_file()
os.environ["SAGA_SERVER"] = "asgi"  # settings: pooled connections, see DATABASES
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

application = ProtocolTypeRouter({"http": django_asgi_app})
