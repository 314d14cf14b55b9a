"""The HTTP service (`embedlab serve`): FastAPI + uvicorn over fitted models.

Modules: :mod:`~embedlab.serve.keys` (API keys, hashed on disk), :mod:`~embedlab.serve.batching`
(dynamic micro-batching of encoder calls with back-pressure), :mod:`~embedlab.serve.registry`
(served models, one encoder shared by every model that uses it), :mod:`~embedlab.serve.app`
(the endpoints, limits, errors and Prometheus metrics). Needs the ``serve`` extra
(``pip install embedlab[serve]``).
"""

from __future__ import annotations

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str):
    if name in __all__:
        from embedlab.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'embedlab.serve' has no attribute {name!r}")
