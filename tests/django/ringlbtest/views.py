"""Views that exercise what a proxy in front of Gunicorn must get right."""

import hashlib
import json

from django.conf import settings
from django.http import HttpResponse, HttpResponseForbidden, JsonResponse, StreamingHttpResponse
from django.middleware.csrf import get_token
from django.views.decorators.csrf import csrf_exempt


def _tagged(response):
    response["X-Backend"] = settings.INSTANCE
    return response


def index(request):
    """A plain page: the load test's target."""
    return _tagged(HttpResponse("ok\n", content_type="text/plain"))


def ping(request):
    """No body: Gunicorn writes the whole response in one send (a response with a body is
    two, its head then its body), so killing the server never cuts one in half."""
    return _tagged(HttpResponse(status=204))


def form(request):
    """CSRF-protected form: GET sets the cookie and returns the token; POST only gets here
    when CsrfViewMiddleware accepted the token (otherwise Django answers 403)."""
    if request.method == "POST":
        return _tagged(JsonResponse({"accepted": request.POST.get("message", "")}))
    token = get_token(request)
    return _tagged(JsonResponse({"token": token}))


@csrf_exempt
def upload(request):
    """Reads the body as Django sees it (CONTENT_LENGTH bytes of wsgi.input) and reports
    its SHA-256 and length."""
    digest = hashlib.sha256()
    length = 0
    while True:
        chunk = request.read(256 * 1024)
        if not chunk:
            break
        digest.update(chunk)
        length += len(chunk)
    return _tagged(JsonResponse({"sha256": digest.hexdigest(), "length": length}))


def stream(request):
    """A streaming response: `n` lines, produced one by one (no Content-Length)."""
    n = int(request.GET.get("n", "1000"))

    def lines():
        for i in range(n):
            yield f"line {i:06d} {'x' * 80}\n"

    return _tagged(StreamingHttpResponse(lines(), content_type="text/plain"))


def echo(request):
    """What the app is told about the client."""
    meta = request.META
    return _tagged(
        JsonResponse(
            {
                "REMOTE_ADDR": meta.get("REMOTE_ADDR"),
                "HTTP_X_REAL_IP": meta.get("HTTP_X_REAL_IP"),
                "HTTP_X_FORWARDED_FOR": meta.get("HTTP_X_FORWARDED_FOR"),
                "HTTP_HOST": meta.get("HTTP_HOST"),
            }
        )
    )


@csrf_exempt
def refuse(request):
    """Refuses a POST without reading its body (as a permission check or a CSRF failure
    does): Gunicorn answers and closes while the client may still be sending."""
    return _tagged(HttpResponseForbidden("refused\n", content_type="text/plain"))
