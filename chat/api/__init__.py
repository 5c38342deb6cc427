"""The HTTP API: the rooms of protocol v1 over Server-Sent Events and JSON POSTs, and one-off
questions outside any room (docs/http-api.md, docs/openapi.yaml)."""
