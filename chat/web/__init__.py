"""The web pages: home (enter a room, recent rooms, login state), the room page and login.

The lead includes `chat.web.urls` at the site root. The pages are plain Django templates in
frontend/templates; the room page's behaviour lives in ES modules in frontend/static/chat/js.
"""
