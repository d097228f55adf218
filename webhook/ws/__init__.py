"""The operator's WebSocket server: push (subscribe) and request/response over one connection.

``server`` serves it (aiohttp) from informer caches, ``hub`` fans changes out to subscriptions with bounded
queues, ``auth`` authenticates and authorises clients (TokenReview, SubjectAccessReview), ``settings`` is
its typed component options. It shares nothing with the admission webhook but the process model and the
certificates: both are servers of the operator, kept apart in packages of their own.
"""
