"""The real URLconf plus views that fail the way Django fails outside DRF, to prove that
Django's own error pages are JSON under /v1 and /healthz too."""

from django.http import HttpResponse
from django.urls import path

from artifacts_project.urls import handler400, handler403, handler404, handler500
from artifacts_project.urls import urlpatterns as real_patterns

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]


def crash(request):
    raise RuntimeError("boom")


def read_form(request):
    return HttpResponse(str(len(request.POST)))


urlpatterns = [
    path("v1/crash", crash),
    path("v1/form", read_form),
    path("healthz/crash", crash),
    path("crash", crash),
    *real_patterns,
]
