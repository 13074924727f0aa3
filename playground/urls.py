from django.contrib import admin
from django.urls import include, path

from runs.logins import throttled

admin.site.site_header = "CodeCarbon Playground admin"
admin.site.site_title = "CodeCarbon Playground"

urlpatterns = [
    path("admin/login/", throttled(admin.site.login), name="admin-login"),
    path("admin/", admin.site.urls),
    path("", include("runs.urls")),
]

handler404 = "runs.api.handler404"
handler500 = "runs.api.handler500"
