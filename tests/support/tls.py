"""TLS for test clients: the test servers use self-signed certificates."""

import ssl


def insecure_context() -> ssl.SSLContext:
    """A client context that accepts any certificate (the tests check TLS policy elsewhere)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
