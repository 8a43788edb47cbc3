"""Background jobs: Dash's managers (local diskcache or the shared server's Celery app and queues),
the job panel a view shows while it waits, the work jobs do, and the shared server's fair queue.
"""
