"""Two small services: ``orders`` (service A) calls ``stock`` (service B) over HTTP."""
