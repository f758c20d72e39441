"""mk1's dispatcher as a Chalice app: routes only parse and serialize.

The domain lives in chalicelib/ (service.py is the front door). `chalicelib.edge.server`
serves this app embedded, with TCP_NODELAY, and attaches the Dispatcher.
"""
import functools

from chalice import Chalice, Response

from chalicelib.edge import views as http

app = Chalice(app_name="mk1-dispatcher")

ANY_BODY = ["*/*"]   # Lambda takes the payload as bytes whatever its Content-Type


def _send(resp) -> Response:
    return Response(body=resp.body, status_code=resp.status, headers=resp.headers)


def guarded(view):
    """Anything unexpected becomes Lambda's ServiceException shape, never Chalice's or a traceback."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except Exception:
            return _send(http.internal_error())
    return wrapper


@app.route("/2015-03-31/functions/{name}/invocations", methods=["POST"], content_types=ANY_BODY)
@guarded
def invoke(name):
    return _send(http.dispatcher().handle_invoke(http.request(app), name))


@app.route("/2015-03-31/functions/{name}/invocations", methods=["GET", "PUT", "DELETE", "PATCH"],
           content_types=ANY_BODY)
@guarded
def invoke_wrong_method(name):
    return _send(http.method_not_allowed())


@app.route("/health", methods=["GET"])
@guarded
def health():
    return _send(http.health())


@app.route("/mk1/status", methods=["GET"])
@guarded
def status():
    return _send(http.status())


@app.route("/mk1/invocations/{request_id}", methods=["GET"])
@guarded
def async_result(request_id):
    return _send(http.async_result(http.request(app), request_id))


@app.route("/mk1/usage", methods=["GET"])
@guarded
def usage():
    return _send(http.usage(http.request(app)))


@app.route("/mk1/usage/report", methods=["GET"])
@guarded
def usage_report():
    return _send(http.usage_report(http.request(app)))


@app.route("/metrics", methods=["GET"])
@guarded
def metrics():
    return _send(http.metrics())
