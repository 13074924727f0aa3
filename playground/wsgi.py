import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")

application = get_wsgi_application()

# Load CodeCarbon's grid data now, in each web process as it starts, rather than in the
# first request that shows the grid chooser (~0.5 s).
from runs.figures import grids  # noqa: E402

grids.grids()
