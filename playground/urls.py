from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "CodeCarbon Playground admin"
admin.site.site_title = "CodeCarbon Playground"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("runs.urls")),
]

handler404 = "runs.api.handler404"
handler500 = "runs.api.handler500"
