from django.contrib import admin
from django.urls import path

from emgapiv2.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v2/", api.urls),
]
