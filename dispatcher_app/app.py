"""mk1's dispatcher as a Chalice app: routes only parse and serialize.

The domain lives in chalicelib/ (invoke.py is the call path; compose.py builds the parts).
`chalicelib.edge.server` serves this app embedded, with TCP_NODELAY, and attaches the
dispatcher. Every route is `answered`: its result or error becomes Lambda's answer there.
"""
from chalice import Chalice

from chalicelib.edge import views
from chalicelib.edge.answers import answered

app = Chalice(app_name="mk1-dispatcher")

ANY_BODY = ["*/*"]   # Lambda takes the payload as bytes whatever its Content-Type


@app.route("/2015-03-31/functions/{name}/invocations", methods=["POST"], content_types=ANY_BODY)
@answered
def invoke(name):
    return views.invoke(app, name)


@app.route("/2015-03-31/functions/{name}/invocations", methods=["GET", "PUT", "DELETE", "PATCH"],
           content_types=ANY_BODY)
@answered
def invoke_wrong_method(name):
    return views.method_not_allowed()


@app.route("/health", methods=["GET"])
@answered
def health():
    return views.health()


@app.route("/mk1/status", methods=["GET"])
@answered
def status():
    return views.status()


@app.route("/mk1/invocations/{request_id}", methods=["GET"])
@answered
def async_result(request_id):
    return views.async_result(app, request_id)


@app.route("/mk1/usage", methods=["GET"])
@answered
def usage():
    return views.usage(app)


@app.route("/mk1/usage/report", methods=["GET"])
@answered
def usage_report():
    return views.usage_report(app)


@app.route("/metrics", methods=["GET"])
@answered
def metrics():
    return views.metrics()
