"""Rooms and their messages. Questions are stored when asked; answers when they start (status
`streaming`) and again when they end, with their final status, sources and usage."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.db import models


class Room(models.Model):
    """A chat room. A room named by a visit alone has no row: it is made with the first thing
    said in it (public, no owner), or by someone creating it (`chat.rooms`), who owns it."""

    class Visibility(models.TextChoices):
        PUBLIC = "public"  # anyone the server lets in (guests too, if `allow_guests`)
        PRIVATE = "private"  # its members only; never listed to anyone else

    name = models.CharField(max_length=64, unique=True)
    # Chroma collection searched for this room's answers; blank means settings.CHAT_COLLECTION.
    collection = models.CharField(max_length=63, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)
    last_activity = models.DateTimeField(auto_now_add=True, db_index=True)
    # Highest seq known to be appended; lets a Redis log that lost its data start above it.
    last_seq = models.BigIntegerField(default=0)

    # Who decides (null: nobody yet; rooms from before owners existed, taken over by staff).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_rooms",
    )
    visibility = models.CharField(
        max_length=16, choices=Visibility.choices, default=Visibility.PUBLIC
    )
    allow_guests = models.BooleanField(default=True)
    # What the room's settings edit (chat.rooms.configuration.RoomSettingsForm checks them).
    title = models.CharField(max_length=100, blank=True, default="")
    description = models.CharField(max_length=500, blank=True, default="")
    # What people call the assistant (`@name`); blank: "assistant" (and its Korean alias).
    assistant_name = models.CharField(max_length=40, blank=True, default="")
    # The LLM model, one of settings.CHAT_MODELS; blank: settings.CHAT_MODEL.
    model = models.CharField(max_length=100, blank=True, default="")
    system_prompt = models.TextField(blank=True, default="")
    # Sampling temperature; null: the provider's default.
    temperature = models.FloatField(null=True, blank=True)
    # The room's own Chroma collection of uploaded documents (chat.documents); blank until the
    # first upload makes it. Its answers search it beside the shared collection (`collection`,
    # or settings.CHAT_COLLECTION), unless the owner turns the shared one off.
    documents_collection = models.CharField(max_length=63, blank=True, default="")
    use_shared_knowledge = models.BooleanField(default=True)

    class Meta:
        ordering = ["-last_activity"]

    def __str__(self) -> str:
        return self.name


class RoomMembership(models.Model):
    """A signed-in person's role in a room (the owner is `Room.owner`, not a row here), or
    someone's removal from it: a `removed` person may not enter again, public room or not. A
    removed guest is named by `guest_id` (their session's guest id), with no user."""

    class Role(models.TextChoices):
        MODERATOR = "moderator"
        MEMBER = "member"
        REMOVED = "removed"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="room_memberships",
    )
    guest_id = models.CharField(max_length=64, blank=True, default="")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="one_role_per_room"),
            models.UniqueConstraint(
                fields=["room", "guest_id"],
                condition=~models.Q(guest_id=""),
                name="one_removal_per_guest",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.role} of {self.room_id}"


class Invite(models.Model):
    """An invite link to a room: its URL carries this row's id, signed (chat.rooms.invites); the row
    says until when and how many times it admits someone."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="invites")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField()
    max_uses = models.PositiveIntegerField(default=1)
    uses = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"invite {self.pk} to {self.room_id} ({self.uses}/{self.max_uses})"


class Message(models.Model):
    """A question (role `user`), a person's plain message (role `message`, from `say`: it
    asks nothing) or an answer (role `assistant`) in a room."""

    class Role(models.TextChoices):
        USER = "user"
        MESSAGE = "message"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        STREAMING = "streaming"
        CANCELLED = "cancelled"
        FAILED = "failed"
        INTERRUPTED = "interrupted"

    id = models.CharField(primary_key=True, max_length=40)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    text = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    # Author of a question (an answer's asker is its question's author).
    user_id = models.CharField(max_length=64, blank=True, default="")
    user_name = models.CharField(max_length=150, blank=True, default="")
    client_id = models.CharField(max_length=64, blank=True, default="")
    question = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="answers"
    )
    sources = models.JSONField(default=list, blank=True)
    usage = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    # Room seq of the event that created this message (question / answer.start), and of the
    # answer's end; null until appended to the room log.
    seq = models.BigIntegerField(null=True, blank=True)
    end_seq = models.BigIntegerField(null=True, blank=True)
    created = models.DateTimeField(db_index=True)
    finished = models.DateTimeField(null=True, blank=True)
    # Removed by a moderator: the text is gone (emptied), the row stays so the room's order
    # and an answer's link to its question do.
    redacted = models.BooleanField(default=False)
    # Versions of an answer: every answer to a question is a version of it, numbered from 1
    # (regenerated or continued ones are 2, 3, ...); `continues` is the answer whose text a
    # continued version starts with. A question sent again edited names the one it `edits`.
    version = models.PositiveIntegerField(default=1)
    continues = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="continued_by"
    )
    edits = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="edited_by"
    )

    class Meta:
        ordering = ["created"]
        indexes = [models.Index(fields=["room", "created"])]
        constraints = [
            # One answer being written per question, on every worker: a regenerate or a
            # continue asked twice at once starts one answer (the database decides).
            models.UniqueConstraint(
                fields=["question"],
                condition=models.Q(status="streaming"),
                name="one_running_version_per_question",
            ),
            # The same client_id from the same user in the same room is asked only once.
            models.UniqueConstraint(
                fields=["room", "user_id", "client_id"],
                condition=~models.Q(client_id=""),
                name="unique_client_id_per_user_room",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.id} ({self.status})"


class Feedback(models.Model):
    """One person's 👍 or 👎 on an answer: one row per answer and person (`Identity.id`: `u:<pk>`
    for someone signed in, `g:<hex>` for a guest), changed in place, deleted when taken back."""

    class Value(models.TextChoices):
        UP = "up"
        DOWN = "down"

    answer = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user_id = models.CharField(max_length=64)
    value = models.CharField(max_length=8, choices=Value.choices)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["answer", "user_id"], name="one_feedback_per_person")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.value} {self.answer_id}"


class FeedbackCount(models.Model):
    """An answer's 👍 and 👎 counts, kept with each change (the admin sorts answers by them), and
    `rev`, raised by one with every change: events of two changes may reach the room log in
    either order, and the counts with the higher `rev` are the later ones."""

    answer = models.OneToOneField(
        Message, primary_key=True, on_delete=models.CASCADE, related_name="feedback_count"
    )
    up = models.PositiveIntegerField(default=0)
    down = models.PositiveIntegerField(default=0, db_index=True)
    rev = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "answer feedback"
        verbose_name_plural = "answer feedback (most 👎 first)"

    def __str__(self) -> str:
        return f"{self.answer_id}: {self.up} up, {self.down} down"


class ApiToken(models.Model):
    """A key for programs using the HTTP API (`Authorization: Bearer <key>`).

    Only the key's SHA-256 is stored: the key itself is shown once, when it is issued
    (`manage.py create_token`). Deleting the row revokes the key.
    """

    KEY_PREFIX = "rc_"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, default="")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The key's first characters, so a person can tell their keys apart; not a secret.
    prefix = models.CharField(max_length=16, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name or 'token'} ({self.prefix}…) of {self.user_id}"

    @staticmethod
    def hash_key(key: str) -> str:
        """The stored form of a key: its SHA-256, hex (keys are random, so no salt is needed)."""
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def issue(cls, user: Any, name: str = "") -> tuple[ApiToken, str]:
        """Create a token for `user`; returns it and the key, which is never stored."""
        key = cls.KEY_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, key_hash=cls.hash_key(key), prefix=key[:10]
        )
        return token, key


class Document(models.Model):
    """A file uploaded to a room's own collection (chat.documents), searchable: its passages
    are in the room's Chroma collection with `source` = `name` and `upload` = `upload`."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="documents")
    name = models.CharField(max_length=120)
    size = models.PositiveBigIntegerField()
    chunks = models.PositiveIntegerField()
    # The upload whose passages are the live ones (a replace swaps it).
    upload = models.CharField(max_length=40)
    # Who added it (its latest version): a protocol id (`u:<pk>`) and the name shown.
    user_id = models.CharField(max_length=64, blank=True, default="")
    user_name = models.CharField(max_length=150, blank=True, default="")
    created = models.DateTimeField()
    updated = models.DateTimeField()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["room", "name"], name="one_document_per_name")
        ]

    def __str__(self) -> str:
        return f"{self.name} in {self.room_id}"


class DocumentUpload(models.Model):
    """One upload being indexed in the background, and how far it got: what the page polls
    to show progress to the room's moderators. Kept after it ends (`done`, `failed`)."""

    class Status(models.TextChoices):
        INDEXING = "indexing"
        DONE = "done"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=40)
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="document_uploads")
    name = models.CharField(max_length=120)
    size = models.PositiveBigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.INDEXING)
    # 0..1: the share of the passages embedded so far (writing is the last, short step).
    progress = models.FloatField(default=0.0)
    chunks = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True, default="")
    user_id = models.CharField(max_length=64, blank=True, default="")
    user_name = models.CharField(max_length=150, blank=True, default="")
    created = models.DateTimeField(db_index=True)
    updated = models.DateTimeField()

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"upload {self.id} of {self.name} ({self.status})"
