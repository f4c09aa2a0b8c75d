"""HTTPS client that the tests run on the host under test (Python 3 stdlib only),
as a browser would: cookies kept in a file between calls, the form's CSRF token
read from the page, certificates verified against the system trust store.

    python3 web_client.py JAR METHOD URL [FORM_JSON]

With WEB_CLIENT_SOURCE set, connections come from that local address (a
client address of the test's choosing, for the per-address controls).

FORM_JSON's fields are posted as a form; a field "csrf": "from:URL" takes the
token from that page first; a field may be a reference to a password in the
file named by $SUBMISSION_VERIFY_SECRETS (secret_refs.py). Prints one JSON object: status, location, body.
"""

import functools
import http.client
import http.cookiejar
import json
import os
import re
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request

from secret_refs import reveal


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class SourceHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, context, source):
        super().__init__(context=context)
        self.source = source

    def https_open(self, req):
        connection = functools.partial(http.client.HTTPSConnection, source_address=(self.source, 0))
        return self.do_open(connection, req, context=self._context)


def opener(jar_path):
    jar = http.cookiejar.LWPCookieJar(jar_path)
    try:
        jar.load(ignore_discard=True)
    except FileNotFoundError:
        pass
    context = ssl.create_default_context()
    source = os.environ.get("WEB_CLIENT_SOURCE")
    https = SourceHTTPSHandler(context, source) if source else urllib.request.HTTPSHandler(context=context)
    handlers = [https, urllib.request.HTTPCookieProcessor(jar), NoRedirect]
    return urllib.request.build_opener(*handlers), jar


def call(open_url, method, url, form=None):
    if not url.startswith("https://"):
        raise SystemExit(f"only https:// addresses: {url}")
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - https only, checked above
    try:
        with open_url(request, timeout=60) as response:
            return response.status, response.headers.get("Location"), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location"), error.read().decode()


def main(jar_path, method, url, form_json=None):
    open_url, jar = opener(jar_path)
    form = reveal(json.loads(form_json)) if form_json else None
    if form and str(form.get("csrf", "")).startswith("from:"):
        _, _, page = call(open_url.open, "GET", form["csrf"][5:])
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        form["csrf"] = found.group(1) if found else ""
    status, location, body = call(open_url.open, method, url, form)
    jar.save(ignore_discard=True)
    print(json.dumps({"status": status, "location": location, "body": body}))


if __name__ == "__main__":
    main(*sys.argv[1:])
