"""The async Flask example: ``flask --app examples.flask_app.app:app run`` (see README.md here)."""
