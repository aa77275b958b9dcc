"""HTTPS for the REST API, and the rule that keeps tokens off the network in clear.

The backend serves TLS when settings name a certificate and its key (PEM files). Without
TLS it binds only loopback addresses, unless allow_insecure_http says a TLS-terminating
proxy on the same host (or a trusted network) stands in front: every request carries a
bearer token, and login and register carry passwords.
"""

from __future__ import annotations

import ipaddress
import ssl

from backend.settings import Settings

__all__ = ["check_exposure", "is_loopback", "ssl_context"]


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1); "" and 0.0.0.0 are every
    interface."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to, it is not known to be local


def check_exposure(settings: Settings) -> None:
    """ValueError naming the settings when the API would serve plain HTTP off this host."""
    if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
        raise ValueError(
            "tls_cert_file and tls_key_file (XPUTRACE_TLS_CERT_FILE, "
            "XPUTRACE_TLS_KEY_FILE) go together"
        )
    if (
        settings.tls_cert_file is None
        and not settings.allow_insecure_http
        and not is_loopback(settings.host)
    ):
        raise ValueError(
            f"refusing to serve plain HTTP on {settings.host!r}, which is not loopback: give "
            "a certificate and key (XPUTRACE_TLS_CERT_FILE, XPUTRACE_TLS_KEY_FILE), or set "
            "XPUTRACE_ALLOW_INSECURE_HTTP=true if a TLS proxy on this host stands in front"
        )


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context (TLS 1.2 or later), or None for plain HTTP."""
    check_exposure(settings)
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return ctx
