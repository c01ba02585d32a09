"""WSGI entry point for gunicorn: ``gunicorn app.wsgi:server``."""

from app.webapp import create_app

app = create_app()
server = app.server
