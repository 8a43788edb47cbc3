"""The lab team's shared server as processes: the Celery worker entry and the stack that starts
Redis, the workers and the app under gunicorn (access control: :mod:`app.access`; the Celery app and
its queues: :mod:`app.jobs.celery_app`).
"""
