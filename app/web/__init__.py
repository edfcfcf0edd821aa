"""The web app: REST API (``/api/v1``), health probes and the browser page.

Build it with :func:`app.web.factory.create_app`.
"""
