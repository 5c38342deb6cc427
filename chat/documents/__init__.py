"""A room's own documents: files its owner or moderators upload, indexed in the room's own
Chroma collection and searched by its answers beside the shared knowledge (docs/documents.md).

- `files`: the upload itself: its name, its type (by extension and by content), its text;
  every refusal is a `ProtocolError` with the code the HTTP API answers with.
- `store`: who may do what (through `chat.rooms`' one access rule), the limits, the rows of
  documents and uploads, the room's collection's name.
- `indexing`: the background job: chunk, embed (in a thread, never on the event loop), write
  to Chroma only when everything is ready, then the room's `document.added` event.
"""
