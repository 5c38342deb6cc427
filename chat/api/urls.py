"""URLs of the HTTP API, included under `api/` (docs/http-api.md). Room names are matched
loosely here so that a bad one gets the API's JSON 404, not the site's HTML page."""

from django.urls import path, re_path

from . import views

urlpatterns = [
    path("rooms/<str:room>", views.room_settings, name="api_room"),
    path("rooms/<str:room>/events", views.room_events, name="api_room_events"),
    path("rooms/<str:room>/questions", views.post_question, name="api_post_question"),
    path(
        "rooms/<str:room>/answers/<str:answer_id>/cancel",
        views.cancel_answer,
        name="api_cancel_answer",
    ),
    path("ask", views.ask, name="api_ask"),
    re_path(r"^(?P<path>.*)$", views.not_found),
]
