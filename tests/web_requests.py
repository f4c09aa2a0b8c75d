"""Many plain HTTPS requests from one client address, run on the host under test
(Python 3 stdlib only), for the tests of nginx's limits and logs:

    python3 web_requests.py SOURCE COUNT METHOD URL [BODY_BYTES]

COUNT requests one after another, on one connection from the local address
SOURCE (a new one when the server closed it), certificates verified against the
system trust store; with BODY_BYTES, each carries a form body of that size.
Prints a JSON list of the statuses, and the last answer's Server header.
"""

import http.client
import json
import ssl
import sys
import urllib.parse


def main(source, count, method, url, body_bytes="0"):
    parts = urllib.parse.urlsplit(url)
    context = ssl.create_default_context()
    body = ("x=" + "a" * (int(body_bytes) - 2)).encode() if int(body_bytes) > 2 else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    statuses, server, connection = [], None, None
    path = parts.path + ("?" + parts.query if parts.query else "")
    for _ in range(int(count)):
        if connection is None:
            connection = http.client.HTTPSConnection(
                parts.hostname, parts.port or 443, context=context, source_address=(source, 0), timeout=30
            )
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
        server = response.getheader("Server")
        if response.will_close:
            connection.close()
            connection = None
    print(json.dumps({"statuses": statuses, "server": server}))


if __name__ == "__main__":
    main(*sys.argv[1:])
