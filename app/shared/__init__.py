"""The lab team's shared server: HTTP Basic auth, login throttling, roles, the Celery app and
worker, and the stack that starts Redis, the workers and gunicorn.
"""
