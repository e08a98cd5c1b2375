"""MetaSeg Viewer's HTTP service: FastAPI routes around the core library's Predictor.

Run ``uvicorn server.app:app`` from the repository root or the ``metaseg-server`` script.
"""
