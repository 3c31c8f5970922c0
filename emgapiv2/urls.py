from django.contrib import admin
from django.urls import path

from emgapiv2.api import api
from emgapiv2.tes_api import tes_api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v2/", api.urls),
    path("ga4gh/tes/v1/", tes_api.urls),
]
