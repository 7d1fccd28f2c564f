"""Settings of the Django app that ringlb's tests put behind the proxy (tests/django.rs).

No database: the views need none. CSRF protection is on (Django's default middleware),
with the token in a cookie, as a stock Django project has it.
"""

import os

SECRET_KEY = "ringlb-test-only-not-secret"
DEBUG = False
# The tests send `Host: app.test`; ringlb must pass it through unchanged for Django to
# accept the request (and for the CSRF Origin check to pass).
ALLOWED_HOSTS = ["app.test"]
INSTALLED_APPS = []
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "ringlbtest.urls"
WSGI_APPLICATION = "ringlbtest.wsgi.application"
DATABASES = {}
USE_TZ = True
# Uploads are read as a stream by the views; nothing is buffered by Django itself.
DATA_UPLOAD_MAX_MEMORY_SIZE = None
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
# Which instance answered (the tests start several); sent as `X-Backend`.
INSTANCE = os.environ.get("RINGLB_TEST_INSTANCE", "?")
