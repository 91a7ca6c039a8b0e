"""The HTTPS side: the health endpoint and mail client set-up (autoconfig.py) now; the panel,
admin, webmail and API to come."""
