"""The service's endpoints, one router per concern: health and metrics, embeddings,
classify / detect, search, models and their classes. Each is made for one
:class:`~embedlab.serve.state.ServiceState` and the request bodies of its configuration."""
