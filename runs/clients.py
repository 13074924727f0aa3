"""Who a request comes from: the address that per-client limits and the fair queue use.

The peer's address, unless the peer is a trusted proxy (TRUSTED_PROXIES: by default
the front on this machine, which sets X-Forwarded-For itself) and the request carries
the front's token (FRONT_TOKEN, where one is set); then the right-most address in
X-Forwarded-For that is not a trusted proxy. A client cannot choose its address by
sending the header, nor a local process by reaching gunicorn past the front: only the
front's word counts. An IPv6 client is its /64, the block one host is usually given.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest

UNKNOWN = "unknown"


@functools.cache
def _trusted_networks(proxies: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _parse(address: str):
    try:
        return ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return None


def _is_trusted(address) -> bool:
    networks = _trusted_networks(tuple(settings.TRUSTED_PROXIES))
    return address is not None and any(address in network for network in networks)


def _from_the_front(request: HttpRequest) -> bool:
    token = settings.FRONT_TOKEN
    sent = request.headers.get("x-front-token", "")
    return not token or hmac.compare_digest(sent.encode(), token.encode())


def client_of(request: HttpRequest) -> str:
    """The client a request is counted against: an address (IPv6: its /64)."""
    address = _parse(request.META.get("REMOTE_ADDR", ""))
    if _is_trusted(address) and _from_the_front(request):
        forwarded = request.headers.get("x-forwarded-for", "").split(",")
        for hop in reversed([h for h in forwarded if h.strip()]):
            address = _parse(hop)
            if not _is_trusted(address):
                break
    if address is None:
        return UNKNOWN
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def may_stop(request: HttpRequest, sent) -> bool:
    """Whether `request` comes from the author of `sent` (a run or a series), who alone
    may stop it (its `stoppable_by` says by which session or client)."""
    return sent.stoppable_by(request.session.session_key, client_of(request))
