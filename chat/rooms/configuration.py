"""A room's settings: what its owner (and staff) may change, checked by one form whatever the
way in (the settings page, `PATCH /api/rooms/<room>`; the admin uses the same checks); what
its members see of them; and what its answers are made with.

Nothing is cached: an answer reads its room's settings with its question's own database write
(`chat.storage.create_question`), so a change reaches the next answer on every worker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from chat.identity import Identity
from chat.models import Room
from chat.protocol import ProtocolError

from . import access_and_room, access_to

# The longest system prompt a room may set (it is sent with every answer's request).
MAX_SYSTEM_PROMPT_CHARS: Final = 4000
# What people type after `@` to call the assistant: one word (Unicode letters and digits, `-`,
# `_`), so the prompt can say it as it is.
ASSISTANT_NAME_RE: Final = re.compile(r"[\w-]{1,40}")
# Chroma's own rule for collection names (chromadb.api.segment.check_index_name).
_COLLECTION_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]")
_IPV4_RE: Final = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")

# What `PATCH /api/rooms/<room>` may change, with the JSON type each takes.
EDITABLE: Final[dict[str, tuple[type, ...]]] = {
    "title": (str,),
    "description": (str,),
    "visibility": (str,),
    "allow_guests": (bool,),
    "assistant_name": (str,),
    "collection": (str,),
    "model": (str,),
    "system_prompt": (str,),
    "temperature": (int, float, type(None)),
    "use_shared_knowledge": (bool,),
}
# The rooms' own collections (chat.documents) are named with this prefix; no room may choose
# one as its shared collection (that would read another room's documents).
ROOM_COLLECTION_PREFIX: Final = "roomdocs-"


@dataclass(frozen=True, slots=True)
class AnswerSettings:
    """What a room's answers are made with; blank or None: the server's default."""

    collection: str = ""
    model: str = ""
    system_prompt: str = ""
    temperature: float | None = None
    assistant_name: str = ""
    # The room's own documents' collection ("": none yet), and whether the shared one is
    # searched too.
    documents_collection: str = ""
    use_shared: bool = True

    @classmethod
    def of(cls, room: Room | None) -> AnswerSettings:
        if room is None:
            return cls()
        return cls(
            collection=room.collection,
            model=room.model,
            system_prompt=room.system_prompt,
            temperature=room.temperature,
            assistant_name=room.assistant_name,
            documents_collection=room.documents_collection,
            use_shared=room.use_shared_knowledge,
        )


def public_info(room: Room | None, name: str) -> dict[str, Any]:
    """What every member may know of a room's settings (never its system prompt or its
    collection): the `room` of a `room.updated` event and the `room_info` of a `welcome`."""
    if room is None:
        return {
            "title": name,
            "description": "",
            "visibility": Room.Visibility.PUBLIC.value,
            "allow_guests": True,
            "assistant_name": "",
            "model": "",
        }
    return {
        "title": room.title or name,
        "description": room.description,
        "visibility": room.visibility,
        "allow_guests": room.allow_guests,
        "assistant_name": room.assistant_name,
        # The room's choice ("": the server's CHAT_MODEL, also for one taken off CHAT_MODELS).
        "model": room.model if room.model in settings.CHAT_MODELS else "",
    }


def model_choices() -> list[tuple[str, str]]:
    """The models a room may choose (CHAT_MODELS); blank: the server's CHAT_MODEL."""
    default = [("", f"default ({settings.CHAT_MODEL})")]
    return default + [(model, model) for model in settings.CHAT_MODELS]


def _encodable(value: str) -> None:
    """Refuse lone surrogates (JSON can carry them, no database column can store them)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("This text is not valid Unicode.", code="unicode") from None


def _collection_name(value: str) -> None:
    if value and (
        not _COLLECTION_RE.fullmatch(value) or ".." in value or _IPV4_RE.fullmatch(value)
    ):
        raise ValidationError(
            "A collection name is 3 to 63 characters of A-Z a-z 0-9 . _ -, starts and ends "
            "with a letter or digit, has no “..” and is not an IP address.",
            code="collection",
        )
    if value.startswith(ROOM_COLLECTION_PREFIX):
        raise ValidationError(
            f"Collections named “{ROOM_COLLECTION_PREFIX}…” are rooms' own documents.",
            code="collection",
        )


def _assistant_name(value: str) -> None:
    if value and not ASSISTANT_NAME_RE.fullmatch(value):
        raise ValidationError(
            "The assistant's name is one word of up to 40 letters, digits, “-” or “_”.",
            code="assistant_name",
        )


if TYPE_CHECKING:
    _RoomForm = forms.ModelForm[Room]  # generic for mypy only (django-stubs)
else:
    _RoomForm = forms.ModelForm


class RoomSettingsForm(_RoomForm):
    """Every value a room's owner may set, checked. The title is required: a room made
    without one was given its name."""

    title = forms.CharField(
        max_length=100,
        validators=[_encodable],
        error_messages={"required": "A room needs a title."},
    )
    description = forms.CharField(
        max_length=500, required=False, validators=[_encodable], widget=forms.Textarea
    )
    assistant_name = forms.CharField(
        max_length=40, required=False, validators=[_encodable, _assistant_name]
    )
    collection = forms.CharField(
        max_length=63, required=False, validators=[_encodable, _collection_name]
    )
    # Choices from CHAT_MODELS, read when a form is made (a callable), not at import.
    model = forms.ChoiceField(choices=model_choices, required=False)
    system_prompt = forms.CharField(
        max_length=MAX_SYSTEM_PROMPT_CHARS,
        required=False,
        validators=[_encodable],
        widget=forms.Textarea,
    )
    temperature = forms.FloatField(required=False, min_value=0.0, max_value=2.0)

    class Meta:
        model = Room
        fields = tuple(EDITABLE)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allowed = ", ".join(settings.CHAT_MODELS)
        self.fields["model"].error_messages["invalid_choice"] = (
            f"%(value)s is not one of the models this server offers (CHAT_MODELS): {allowed}."
        )


class InvalidSettings(ProtocolError):
    """Settings the form refused: `invalid`, with each field's errors (`fields`: code and
    message), and the bound form, for a page that shows it again."""

    def __init__(self, form: RoomSettingsForm) -> None:
        self.form = form
        self.fields: dict[str, list[dict[str, str]]] = {
            field: [
                {"code": error.code or "invalid", "message": " ".join(error.messages)}
                for error in errors
            ]
            for field, errors in form.errors.as_data().items()
        }
        field, errors = next(iter(self.fields.items()))
        super().__init__("invalid", f"`{field}`: {errors[0]['message']}")


def settings_form(name: str, identity: Identity) -> RoomSettingsForm:
    """The settings form of the room `name`, filled with its values, for someone who may change
    them (`ProtocolError` otherwise: `not_found` outside a private room, `forbidden`)."""
    room = Room.objects.filter(name=name).first()
    access_to(room, name, identity).check_configure()
    room = room or Room(name=name)
    return RoomSettingsForm(instance=room, initial=current_values(room))


def current_values(room: Room) -> dict[str, Any]:
    """The room's settings as form data (a blank title shows as its name; a model no longer
    allowed, as the default, which answers use anyway)."""
    values: dict[str, Any] = {field: getattr(room, field) for field in EDITABLE}
    values["title"] = room.title or room.name
    if values["model"] not in settings.CHAT_MODELS:
        values["model"] = ""
    if values["temperature"] is None:
        values["temperature"] = ""
    return values


def json_changes(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The changes a JSON body asks for, with their JSON types checked (`invalid` otherwise);
    null or "" for `temperature` means the default."""
    changes: dict[str, Any] = {}
    for field, value in raw.items():
        kinds = EDITABLE.get(field)
        if kinds is None:
            raise ProtocolError("invalid", f"`{field}` is not a setting of a room.")
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ProtocolError("invalid", f"`{field}` has the wrong type.")
        changes[field] = "" if value is None else value
    return changes


@dataclass(frozen=True, slots=True)
class SettingsChanged:
    """What `update_settings` did: the room as saved, and the names of the settings that
    changed (none: nothing to tell anyone)."""

    room: Room
    changed: tuple[str, ...]


def update_settings(name: str, identity: Identity, changes: Mapping[str, Any]) -> SettingsChanged:
    """Apply `changes` (form data: any of `EDITABLE`, the rest keep their values) to the room
    `name`, for its owner or staff. `ProtocolError` as `settings_form`; `InvalidSettings` when
    a value is refused (nothing is saved then). A room with no row yet (staff) gets one.

    Only the settings that changed are written, in one UPDATE (no read-then-write transaction,
    which SQLite would refuse while another writer is busy): two people changing different
    settings at once both keep their change."""
    room = Room.objects.filter(name=name).first()
    access_to(room, name, identity).check_configure()
    if room is None:
        room, _ = Room.objects.get_or_create(name=name)
    form = RoomSettingsForm({**current_values(room), **changes}, instance=room)
    if not form.is_valid():
        raise InvalidSettings(form)
    changed = tuple(form.changed_data)
    if changed:
        saved = {field: getattr(form.instance, field) for field in changed}
        Room.objects.filter(pk=room.pk).update(**saved)
    return SettingsChanged(room=form.instance, changed=changed)


def describe(name: str, identity: Identity) -> dict[str, Any]:
    """`GET /api/rooms/<room>`: the room's public settings and the caller's role; everything
    `update_settings` takes (and the models allowed) when the caller may change them.
    `not_found` for whoever may not enter."""
    access, room = access_and_room(name, identity)
    access.check_enter()
    described: dict[str, Any] = {
        "name": name,
        **public_info(room, name),
        "role": access.role,
        "may_moderate": access.may_moderate,
        "may_configure": access.may_configure,
    }
    if access.may_configure:
        values = current_values(room or Room(name=name))
        described.update(
            collection=values["collection"],
            system_prompt=values["system_prompt"],
            temperature=values["temperature"] if values["temperature"] != "" else None,
            use_shared_knowledge=values["use_shared_knowledge"],
            models=list(settings.CHAT_MODELS),
            default_model=settings.CHAT_MODEL,
        )
    return described
