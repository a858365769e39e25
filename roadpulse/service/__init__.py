"""The control-centre service: the HTTP API, the live stream and the dashboard.

``HttpService`` is the live component that ``build_components`` registers; ``create_app`` builds
the ASGI app from a ``ServiceState``. The dashboard is plain HTML/JS/CSS in ``static/``.
"""

from .app import ServiceState, create_app
from .component import HttpService

__all__ = ["HttpService", "ServiceState", "create_app"]
