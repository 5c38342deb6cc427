"""What was said in a room, looked back at: feedback on answers (`feedback`), pages of the
history before a seq and search (`pages`), export and import (`export`). Plain synchronous
database functions, like `chat.storage`; every one asks `chat.rooms` who may read the room."""
