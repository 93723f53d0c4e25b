"""WSGI entry point."""

import os

from django.core.wsgi import get_wsgi_application

from sagaproject.envfile import use_local_env_file

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sagaproject.settings")
use_local_env_file()
application = get_wsgi_application()
