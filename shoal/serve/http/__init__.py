"""The HTTP front end: the ASGI app, shoal's JSON API and the Open Inference Protocol, request
bodies and tensors, the status page, the server that runs them on uvicorn.
"""
