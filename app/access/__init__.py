"""Who may use the shared server: HTTP Basic authentication on every route (users file, scrypt
hashes) and failed-login throttling; what each role may do is :mod:`app.state.roles`.
"""
