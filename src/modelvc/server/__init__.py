"""The registry server: REST API, auth, push/pull transfer, Hugging Face Hub compatibility.

Routers (one module each) are mounted by app.create_app(); every route authorizes
through auth.authorize() before touching the registry.
"""
