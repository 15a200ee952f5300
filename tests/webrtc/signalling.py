"""HTTP for the WebRTC test clients' signalling (WHIP, WHEP, SRS's JSON API)."""

import urllib.error
import urllib.request


def http(method, url, body=None, content_type=None):
    """Returns (status, headers, body text); HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()
