"""Background jobs: Dash's managers, the job panel a view shows while it waits, the work jobs do,
and the shared server's fair queue.
"""
