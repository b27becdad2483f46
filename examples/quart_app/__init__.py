"""The Quart example: ``hypercorn examples.quart_app.app:app`` (see README.md here)."""
