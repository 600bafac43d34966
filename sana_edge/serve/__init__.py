"""`sana-edge serve`: an OpenAI-compatible image server with a web page (the `serve` extra:
starlette, uvicorn, prometheus-client), under uvicorn or as a Ray Serve deployment (`ray` extra).

Modules: app (routes), engine (loaded exports, worker thread, bounded queue), schema (request
fields), errors (OpenAI error shapes), security (API key, body limit), images (url store),
metrics (Prometheus), page (the web page), ray_app (Ray Serve).
"""
