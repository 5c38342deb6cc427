from django.urls import re_path

from chat.consumers import ChatConsumer

# Any name is routed, so a bad one can be refused with the protocol's close code 4004.
websocket_urlpatterns = [re_path(r"^ws/rooms/(?P<room>[^/]*)/$", ChatConsumer.as_asgi())]
