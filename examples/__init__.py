"""Example apps for aiorq_flask (run from the repository root) and the demo."""
