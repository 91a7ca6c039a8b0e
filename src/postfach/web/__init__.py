"""The HTTPS side: health endpoint now; panel, admin, webmail, API and autoconfig to come."""
