"""URLs of the HTTP API, included under `api/` (docs/http-api.md). Room names are matched
loosely here so that a bad one gets the API's JSON 404, not the site's HTML page."""

from django.urls import path, re_path

from . import documents, views

urlpatterns = [
    path("rooms/<str:room>", views.room_settings, name="api_room"),
    path("rooms/<str:room>/events", views.room_events, name="api_room_events"),
    path("rooms/<str:room>/questions", views.post_question, name="api_post_question"),
    path("rooms/<str:room>/messages", views.post_message, name="api_post_message"),
    path(
        "rooms/<str:room>/answers/<str:answer_id>/cancel",
        views.cancel_answer,
        name="api_cancel_answer",
    ),
    path(
        "rooms/<str:room>/answers/<str:answer_id>/regenerate",
        views.regenerate_answer,
        name="api_regenerate_answer",
    ),
    path(
        "rooms/<str:room>/answers/<str:answer_id>/continue",
        views.continue_answer,
        name="api_continue_answer",
    ),
    path(
        "rooms/<str:room>/questions/<str:question_id>/edit",
        views.edit_question,
        name="api_edit_question",
    ),
    path(
        "rooms/<str:room>/messages/<str:message_id>/redact",
        views.redact_message,
        name="api_redact_message",
    ),
    path(
        "rooms/<str:room>/members/<str:user_id>/remove",
        views.remove_member,
        name="api_remove_member",
    ),
    path(
        "rooms/<str:room>/members/<str:user_id>/role",
        views.set_member_role,
        name="api_set_member_role",
    ),
    path(
        "rooms/<str:room>/answers/<str:answer_id>/feedback",
        views.give_feedback,
        name="api_give_feedback",
    ),
    path("rooms/<str:room>/feedback", views.my_feedback, name="api_my_feedback"),
    path("rooms/<str:room>/history", views.room_history, name="api_room_history"),
    path("rooms/<str:room>/search", views.room_search, name="api_room_search"),
    path("rooms/<str:room>/export", views.room_export, name="api_room_export"),
    path("rooms/<str:room>/documents", documents.room_documents, name="api_room_documents"),
    path(
        "rooms/<str:room>/documents/<str:name>",
        documents.room_document,
        name="api_room_document",
    ),
    path("ask", views.ask, name="api_ask"),
    re_path(r"^(?P<path>.*)$", views.not_found),
]
