"""mk1's dispatcher as a Chalice app: routes only parse and serialize.

The domain lives in chalicelib/ (service.py is the front door). `chalicelib.server`
serves this app embedded, with TCP_NODELAY, and attaches the Dispatcher.
"""
from chalice import Chalice, Response

from chalicelib import http

app = Chalice(app_name="mk1-dispatcher")

ANY_BODY = ["application/json", "application/octet-stream", "binary/octet-stream", "text/plain",
            "application/x-amz-json-1.0", "application/x-amz-json-1.1", "application/x-www-form-urlencoded"]


def _send(resp) -> Response:
    return Response(body=resp.body, status_code=resp.status, headers=resp.headers)


@app.route("/2015-03-31/functions/{name}/invocations", methods=["POST"], content_types=ANY_BODY)
def invoke(name):
    return _send(http.dispatcher().handle_invoke(http.request(app), name))


@app.route("/health", methods=["GET"])
def health():
    return _send(http.health())


@app.route("/mk1/status", methods=["GET"])
def status():
    return _send(http.status())


@app.route("/mk1/invocations/{request_id}", methods=["GET"])
def async_result(request_id):
    return _send(http.async_result(http.request(app), request_id))


@app.route("/mk1/usage", methods=["GET"])
def usage():
    return _send(http.usage(http.request(app)))


@app.route("/mk1/usage/report", methods=["GET"])
def usage_report():
    return _send(http.usage_report(http.request(app)))


@app.route("/metrics", methods=["GET"])
def metrics():
    return _send(http.metrics())
