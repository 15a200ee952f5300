"""HTTP for the WebRTC test clients' signalling (WHIP, WHEP, SRS's JSON API)."""

import urllib.error
import urllib.request

import aioice.ice


def _with_loopback(original):
    """aioice never offers 127.0.0.1 as a host candidate. Inside a network namespace whose
    only interface is `lo` (the defaults suite) it would then have no candidate at all, so
    the test clients add it; next to other interfaces it is one more candidate."""

    def addresses(use_ipv4, use_ipv6):
        found = original(use_ipv4, use_ipv6)
        if use_ipv4 and "127.0.0.1" not in found:
            found.append("127.0.0.1")
        return found

    return addresses


aioice.ice.get_host_addresses = _with_loopback(aioice.ice.get_host_addresses)


# A WHEP offer for a stream that needs the H.264 fallback rendition waits, on the node, up to
# 20 s for that transcoder to go live (FALLBACK_WAIT): the client must wait longer than that.
TIMEOUT_S = 30


def http(method, url, body=None, content_type=None):
    """Returns (status, headers, body text); HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()
