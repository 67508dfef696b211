"""The shared kernel: what every app builds on, and nothing app-specific.

errors (every error code, one place), lookups (ids from input), transactions (one action,
one transaction), request_id, input_limits, commands (the base of every management
command), api, api_defaults and api_schema (the REST API's kit), admin_kit, outages and
request_headers (what a request meets before a view), and locks: the one module that takes
locks, in one fixed order, and so the one kernel module that knows the apps' models.
"""
