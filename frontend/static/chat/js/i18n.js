// UI strings in English and Korean, the language choice, and applying strings to the DOM.
//
// Templates carry English text plus `data-i18n="key"` (text), `data-i18n-attr="attr:key,..."`
// (attributes) and optional `data-i18n-args='{"name": "..."}'`; applyI18n() rewrites them.
// The choice: the user's toggle (localStorage) > navigator.languages > Django's LANGUAGE_CODE.

const STRINGS = {
  en: {
    "lang.name": "English",
    "lang.switchTo": "한국어",
    "lang.switchAria": "Switch the interface to Korean",
    skip: "Skip to content",
    "nav.home": "All rooms",
    "account.signedInAs": "Signed in as {name}",
    "account.guestAs": "Guest · {name}",
    "account.login": "Log in",
    "account.logout": "Log out",
    "account.guest": "Continue as guest",
    "home.title": "Ask together. Watch the answer arrive.",
    "home.lead":
      "Join a room and ask about your documents. Everyone in the room sees the same answer being written, with the sources it draws on.",
    "home.roomLabel": "Room name",
    "home.roomPlaceholder": "e.g. team-docs",
    "home.enter": "Enter room",
    "home.roomHint": "Letters A–Z, digits, “-” and “_”; up to 64 characters.",
    "home.roomEmpty": "Type a room name first.",
    "home.roomInvalid":
      "A room name may only use letters A–Z, digits, “-” and “_” (no spaces or other characters).",
    "home.roomTooLong": "A room name can be at most 64 characters long.",
    "home.recent": "Recent rooms",
    "home.noRooms": "No rooms yet. Name one above to start it.",
    "home.active": "active {time}",
    "home.accountTitle": "Your identity",
    "home.anonymous": "You are not signed in.",
    "home.guestNote": "Guests get a random name that stays with this browser session.",
    "home.guestLoginNote": "Log in to ask under your own name.",
    "login.title": "Log in",
    "login.username": "Username",
    "login.password": "Password",
    "login.submit": "Log in",
    "login.error": "Your username and password didn't match. Please try again.",
    "login.or": "or",
    "login.back": "Back to rooms",
    "room.connecting": "Connecting…",
    "room.live": "Live",
    "room.reconnecting": "Reconnecting…",
    "room.reconnectingIn": "Connection lost. Reconnecting in {s} s…",
    "room.retryNow": "Retry now",
    "room.offline": "You are offline. The page reconnects when the network is back.",
    "room.cantConnect":
      "Still can't reach the room. The server may be down, or your session may have ended.",
    "room.badRoom": "This room cannot be opened: its name is not valid.",
    "room.removed": "You no longer have access to this room.",
    "room.redacted": "Removed by a moderator",
    "mod.redact": "Remove",
    "mod.redactAria": "Remove this message for everyone",
    "mod.redactConfirm": "Remove this message for everyone? Its text is deleted and cannot be brought back.",
    "mod.remove": "Remove",
    "mod.makeModerator": "Make moderator",
    "mod.makeMember": "Make member",
    "mod.removeAria": "Remove {name} from the room",
    "mod.removeConfirm": "Remove {name} from this room? They cannot come back unless someone adds them again.",
    "announce.redacted": "A message was removed by a moderator.",
    "room.closed": "Disconnected",
    "room.policy":
      "The server closed the connection because too many messages were sent. Waiting before reconnecting.",
    "room.tooBig": "A message was too large for the server.",
    "room.members": "In this room",
    "room.membersAria": "People in this room: {n}",
    "room.closeMembers": "Close the list of people",
    "room.you": "you",
    "room.nobody": "Nobody else is here yet.",
    "room.emptyTitle": "Nothing said yet",
    "room.emptyBody":
      "Say hello to the people here, or ask the assistant: start with @assistant, or use the ✦ button. Everyone sees its answer as it is written.",
    "room.askedAssistant": "asked the assistant",
    "room.logLabel": "Conversation",
    "room.jump": "New messages",
    "room.jumpAria": "Scroll to the newest message",
    "composer.label": "Your message",
    "composer.placeholder": "Message, or @assistant…",
    "composer.placeholderOffline": "Waiting for the connection…",
    "composer.send": "Send",
    "composer.ask": "Ask the assistant",
    "composer.askTitle": "Ask the assistant (Ctrl+Enter)",
    "composer.askShort": "Ask AI",
    "composer.hint": "Enter to send · @assistant or Ctrl+Enter asks the assistant",
    "composer.hintAsk": "Enter asks the assistant · everyone sees the answer",
    "composer.count": "{n} / {max}",
    "composer.tooLong": "{n} characters over the limit of {max}",
    "composer.sending": "Sending…",
    "answer.assistant": "Assistant",
    "answer.searching": "Searching sources…",
    "answer.writing": "Writing…",
    "answer.stop": "Stop",
    "answer.stopAria": "Stop this answer",
    "answer.stopping": "Stopping…",
    "answer.empty": "(no text)",
    "status.cancelled": "Stopped",
    "status.failed": "Failed",
    "status.interrupted": "Interrupted",
    "status.cancelledNote": "This answer was stopped before it was finished.",
    "versions.prev": "Previous version",
    "versions.next": "Next version",
    "versions.prevMark": "‹",
    "versions.nextMark": "›",
    "versions.of": "{i} / {n}",
    "versions.regenerate": "Regenerate",
    "versions.continue": "Continue",
    "question.edit": "Edit",
    "question.edited": "edited",
    "question.editAria": "Your question, edited",
    "question.editSend": "Send",
    "question.editCancel": "Cancel",
    "error.conflict": "That cannot be done to this answer any more (it finished, or was already continued).",
    "feedback.label": "Was this answer helpful?",
    "feedback.upAria": "Helpful ({n})",
    "feedback.downAria": "Not helpful ({n})",
    "feedback.takeBack": "Take your vote back",
    "history.older": "Show earlier messages",
    "history.loading": "Loading…",
    "history.beginning": "This is the beginning of the room.",
    "history.failed": "Could not load earlier messages ({message}).",
    "search.title": "Search this room",
    "search.label": "Search the messages of this room",
    "search.placeholder": "e.g. americano",
    "search.button": "Search",
    "search.count": "{n} found",
    "search.none": "Nothing found for “{q}”.",
    "search.failed": "Could not search ({message}).",
    "search.notShown": "Loading the conversation up to this message…",
    "export.title": "Export the conversation",
    "export.markdown": "Markdown (.md)",
    "export.json": "JSON (.json)",
    "sources.title": "Sources ({n})",
    "sources.none": "No matching sources in the knowledge base",
    "sources.score": "relevance {score}",
    "sources.query": "Searched for: {q}",
    "code.copy": "Copy",
    "code.copied": "Copied",
    "code.copyAria": "Copy this code",
    "notice.dismiss": "Dismiss",
    "error.rate_limited": "You are sending too fast. Try again in {s} s.",
    "error.rate_limited_now": "You were sending too fast. You can send again now.",
    "error.busy": "Too many answers are being written right now. Try again in a moment.",
    "error.too_long": "That message is too long.",
    "error.forbidden": "You are not allowed to do that.",
    "error.not_found": "That answer no longer exists.",
    "error.invalid": "The server did not accept that message: {message}",
    "error.unavailable": "The room cannot be reached right now. Your message is back in the box: send it again in a moment.",
    "error.generic": "Server error ({code}): {message}",
    "announce.question": "{name} asked: {text}",
    "announce.message": "{name}: {text}",
    "typing.one": "{a} is typing…",
    "typing.two": "{a} and {b} are typing…",
    "typing.many": "{n} people are typing…",
    "announce.answer": "Answer: {text}",
    "announce.answerStatus": "Answer {status}: {text}",
    "home.mine": "Rooms I belong to",
    "home.noMine": "You are not in any room yet. Create one, or open an invite link.",
    "home.public": "Public rooms",
    "home.here": "{n} here",
    "home.private": "private",
    "home.create": "Create a room",
    "home.titleLabel": "Title (optional)",
    "home.visibility": "Who can enter",
    "home.publicChoice": "Public: anyone can find it and come in",
    "home.privateChoice": "Private: only people you invite",
    "home.createSubmit": "Create room",
    "home.createInvalid":
      "A room name may only use letters A–Z, digits, “-” and “_” (no spaces or other characters).",
    "home.createTaken": "That name is taken. Choose another.",
    "role.owner": "owner",
    "role.moderator": "moderator",
    "role.member": "member",
    "notice.title": "Sorry",
    "notice.notFound": "There is no such room.",
    "invite.button": "Invite",
    "invite.panelTitle": "Invite people",
    "invite.expiresLabel": "Works for",
    "invite.1h": "1 hour",
    "invite.1d": "1 day",
    "invite.7d": "7 days",
    "invite.usesLabel": "Admits",
    "invite.onePerson": "1 person",
    "invite.people": "{n} people",
    "invite.make": "Make a link",
    "invite.link": "Invite link",
    "invite.made": "Works until {time} · uses allowed: {n}",
    "invite.copied": "Copied",
    "invite.failed": "Could not make a link: {message}",
    "invite.created": "Invite link",
    "invite.share":
      "Send this link to the people you want in the room. They sign in, open it and join.",
    "invite.maxUses": "Uses allowed: {n}",
    "invite.expires": "This link works until",
    "invite.back": "Back to the room",
    "invite.eyebrow": "You are invited to a room",
    "invite.by": "Invited by {name}",
    "invite.join": "Join the room",
    "invite.alreadyIn": "You are already in this room.",
    "invite.open": "Open the room",
    "invite.unusableTitle": "This invite cannot be used",
    "invite.expired": "This invite has expired. Ask whoever sent it for a new one.",
    "invite.usedUp":
      "This invite has been used as many times as it allows. Ask whoever sent it for a new one.",
    "invite.gone": "This invite link is not valid: it was changed, or it was withdrawn.",
    "invite.signIn": "Sign in to accept an invite: guests cannot join rooms.",
    "invite.notAllowed": "Only the room's owner and moderators can invite people.",
    "invite.badChoice": "Choose how long the link works and how many people it admits.",
    "settings.title": "Room settings",
    "settings.fix": "Some settings need a fix: see below. Nothing was saved.",
    "settings.roomTitle": "Title",
    "settings.description": "Description",
    "settings.allowGuests":
      "Guests may come in (public rooms only; private rooms never admit guests)",
    "settings.assistantName": "The assistant's name",
    "settings.assistantNameHint": "One word: people call it with @name. Blank: “assistant”.",
    "settings.model": "Model",
    "settings.temperature": "Temperature",
    "settings.temperatureHint": "0 to 2; lower is steadier. Blank: the model's default.",
    "settings.collection": "Knowledge collection",
    "settings.collectionHint":
      "The documents answers are drawn from (manage.py ingest --collection NAME). Blank: the server's.",
    "settings.systemPrompt": "System prompt",
    "settings.systemPromptHint":
      "How the assistant should answer here (up to 4,000 characters); members do not see it. Blank: the server's.",
    "settings.save": "Save",
    "settings.cancel": "Cancel",
    "settings.notAllowed": "Only the room's owner can change its settings.",
    "settings.error.required": "This is required: a room needs a title.",
    "settings.error.max_length": "Too long: at most {limit_value} characters (this has {show_value}).",
    "settings.error.invalid_choice": "{value} is not one of the models this server offers.",
    "settings.error.collection":
      "A collection name is 3 to 63 characters of A–Z a–z 0–9 . _ -, starts and ends with a letter or digit, has no “..” and is not an IP address.",
    "settings.error.assistant_name":
      "The assistant's name is one word of up to 40 letters, digits, “-” or “_”.",
    "settings.error.min_value": "At least {limit_value}.",
    "settings.error.max_value": "At most {limit_value}.",
    "settings.error.invalid": "Enter a number, or leave it blank.",
    "settings.error.unicode": "This text is not valid Unicode.",
    "room.settingsChanged": "The room's settings changed.",
    "documents.button": "Documents",
    "documents.title": "This room's documents",
    "documents.intro": "The assistant answers from these documents, beside the shared knowledge.",
    "documents.choose": "Choose files",
    "documents.drop": "or drop them here",
    "documents.limits": "Up to {size} each: {types}. The same name again replaces it.",
    "documents.empty": "No documents yet.",
    "documents.meta": "{size} · passages: {chunks} · {name} · {time}",
    "documents.delete": "Delete",
    "documents.deleteAria": "Delete {name}",
    "documents.deleteConfirm": "Delete {name}? The assistant stops using it at once.",
    "documents.uploading": "Uploading…",
    "documents.indexing": "Indexing… {percent}%",
    "documents.done": "Searchable · passages: {chunks}",
    "documents.failed": "Failed: {message}",
    "documents.addedNotice": "{name} was added by {who}: the assistant can answer from it now.",
    "documents.replacedNotice": "{name} was replaced by {who}: the assistant uses the new version now.",
    "documents.deletedNotice": "{name} was deleted by {who}.",
    "documents.error.too_long": "{name} is too large to upload here. {message}",
    "documents.error.limit_reached": "{name} was not added: this room has no room left. {message}",
    "documents.error.unsupported_type": "{name} is not a kind of document the assistant can read. {message}",
    "documents.error.invalid": "{name} cannot be read: {message}",
    "documents.error.forbidden": "Only the room's owner and moderators can add or delete documents.",
    "documents.error.conflict": "{name} is still being indexed; wait until it is done.",
    "documents.error.not_found": "{name} is not in this room any more.",
    "documents.error.generic": "{name}: something went wrong ({message}).",
    "settings.useShared": "Answers also search the shared knowledge, not only this room's own documents",
    "time.yesterday": "yesterday",
  },
  ko: {
    "lang.name": "한국어",
    "lang.switchTo": "English",
    "lang.switchAria": "인터페이스를 영어로 바꾸기",
    skip: "본문으로 건너뛰기",
    "nav.home": "모든 방",
    "account.signedInAs": "{name}(으)로 로그인됨",
    "account.guestAs": "게스트 · {name}",
    "account.login": "로그인",
    "account.logout": "로그아웃",
    "account.guest": "게스트로 계속하기",
    "home.title": "함께 묻고, 답이 쓰이는 순간을 함께 보세요.",
    "home.lead":
      "방에 들어가 문서에 대해 질문하세요. 방에 있는 모두가 같은 답변이 출처와 함께 실시간으로 작성되는 모습을 봅니다.",
    "home.roomLabel": "방 이름",
    "home.roomPlaceholder": "예: team-docs",
    "home.enter": "입장",
    "home.roomHint": "영문자, 숫자, “-”, “_”만 사용할 수 있으며 최대 64자입니다.",
    "home.roomEmpty": "먼저 방 이름을 입력하세요.",
    "home.roomInvalid":
      "방 이름에는 영문자, 숫자, “-”, “_”만 쓸 수 있습니다(공백·한글·기타 문자 불가).",
    "home.roomTooLong": "방 이름은 최대 64자까지입니다.",
    "home.recent": "최근 방",
    "home.noRooms": "아직 방이 없습니다. 위에 이름을 입력해 새 방을 시작하세요.",
    "home.active": "{time} 활동",
    "home.accountTitle": "내 정보",
    "home.anonymous": "로그인하지 않았습니다.",
    "home.guestNote": "게스트에게는 이 브라우저 세션 동안 유지되는 임의의 이름이 주어집니다.",
    "home.guestLoginNote": "내 이름으로 질문하려면 로그인하세요.",
    "login.title": "로그인",
    "login.username": "사용자 이름",
    "login.password": "비밀번호",
    "login.submit": "로그인",
    "login.error": "사용자 이름 또는 비밀번호가 올바르지 않습니다. 다시 시도하세요.",
    "login.or": "또는",
    "login.back": "방 목록으로",
    "room.connecting": "연결 중…",
    "room.live": "연결됨",
    "room.reconnecting": "다시 연결하는 중…",
    "room.reconnectingIn": "연결이 끊겼습니다. {s}초 후 다시 연결합니다…",
    "room.retryNow": "지금 다시 연결",
    "room.offline": "오프라인 상태입니다. 네트워크가 돌아오면 다시 연결합니다.",
    "room.cantConnect":
      "아직 방에 연결할 수 없습니다. 서버가 멈췄거나 세션이 만료되었을 수 있습니다.",
    "room.badRoom": "이 방을 열 수 없습니다. 방 이름이 올바르지 않습니다.",
    "room.removed": "이 방에 더 이상 들어올 수 없습니다.",
    "room.redacted": "운영자가 삭제한 메시지입니다",
    "mod.redact": "삭제",
    "mod.redactAria": "모두에게서 이 메시지 삭제",
    "mod.redactConfirm": "모두에게서 이 메시지를 삭제할까요? 내용이 지워지며 되돌릴 수 없습니다.",
    "mod.remove": "내보내기",
    "mod.makeModerator": "운영자로 지정",
    "mod.makeMember": "일반 멤버로",
    "mod.removeAria": "{name}님을 방에서 내보내기",
    "mod.removeConfirm": "{name}님을 이 방에서 내보낼까요? 다시 추가되기 전까지 들어올 수 없습니다.",
    "announce.redacted": "운영자가 메시지를 삭제했습니다.",
    "room.closed": "연결 끊김",
    "room.policy":
      "메시지를 너무 많이 보내 서버가 연결을 닫았습니다. 잠시 기다린 뒤 다시 연결합니다.",
    "room.tooBig": "메시지가 너무 커서 서버가 받지 않았습니다.",
    "room.members": "이 방에 있는 사람",
    "room.membersAria": "이 방에 있는 사람: {n}명",
    "room.closeMembers": "참여자 목록 닫기",
    "room.you": "나",
    "room.nobody": "아직 다른 사람이 없습니다.",
    "room.emptyTitle": "아직 대화가 없습니다",
    "room.emptyBody":
      "여기 있는 사람들에게 인사하거나, @비서로 시작하거나 ✦ 버튼을 눌러 비서에게 물어보세요. 답변이 작성되는 과정을 모두가 함께 봅니다.",
    "room.askedAssistant": "비서에게 질문",
    "room.logLabel": "대화",
    "room.jump": "새 메시지",
    "room.jumpAria": "가장 최근 메시지로 이동",
    "composer.label": "메시지",
    "composer.placeholder": "메시지 또는 @비서…",
    "composer.placeholderOffline": "연결을 기다리는 중…",
    "composer.send": "보내기",
    "composer.ask": "비서에게 묻기",
    "composer.askTitle": "비서에게 묻기 (Ctrl+Enter)",
    "composer.askShort": "AI에게",
    "composer.hint": "Enter로 보내기 · @비서 또는 Ctrl+Enter로 비서에게 질문",
    "composer.hintAsk": "Enter로 비서에게 질문 · 답변은 모두에게 보입니다",
    "composer.count": "{n} / {max}",
    "composer.tooLong": "최대 {max}자에서 {n}자 초과",
    "composer.sending": "보내는 중…",
    "answer.assistant": "어시스턴트",
    "answer.searching": "출처를 찾는 중…",
    "answer.writing": "작성 중…",
    "answer.stop": "중지",
    "answer.stopAria": "이 답변 중지",
    "answer.stopping": "중지하는 중…",
    "answer.empty": "(내용 없음)",
    "status.cancelled": "중지됨",
    "status.failed": "실패",
    "status.interrupted": "중단됨",
    "status.cancelledNote": "이 답변은 끝나기 전에 중지되었습니다.",
    "versions.prev": "이전 버전",
    "versions.next": "다음 버전",
    "versions.prevMark": "‹",
    "versions.nextMark": "›",
    "versions.of": "{i} / {n}",
    "versions.regenerate": "다시 생성",
    "versions.continue": "이어서 쓰기",
    "question.edit": "수정",
    "question.edited": "수정됨",
    "question.editAria": "수정한 질문",
    "question.editSend": "보내기",
    "question.editCancel": "취소",
    "error.conflict": "이 답변에는 더 이상 할 수 없는 작업입니다 (이미 끝났거나 이어서 쓴 답변입니다).",
    "feedback.label": "이 답변이 도움이 되었나요?",
    "feedback.upAria": "도움이 됨 ({n})",
    "feedback.downAria": "도움이 안 됨 ({n})",
    "feedback.takeBack": "평가 취소",
    "history.older": "이전 메시지 보기",
    "history.loading": "불러오는 중…",
    "history.beginning": "대화방의 처음입니다.",
    "history.failed": "이전 메시지를 불러오지 못했습니다 ({message}).",
    "search.title": "대화방 검색",
    "search.label": "이 대화방의 메시지 검색",
    "search.placeholder": "예: 아메리카노",
    "search.button": "검색",
    "search.count": "{n}개 찾음",
    "search.none": "“{q}”에 대한 결과가 없습니다.",
    "search.failed": "검색하지 못했습니다 ({message}).",
    "search.notShown": "이 메시지까지 대화를 불러오는 중…",
    "export.title": "대화 내보내기",
    "export.markdown": "마크다운 (.md)",
    "export.json": "JSON (.json)",
    "sources.title": "출처 ({n})",
    "sources.none": "지식 베이스에서 일치하는 출처 없음",
    "sources.score": "관련도 {score}",
    "sources.query": "검색한 내용: {q}",
    "code.copy": "복사",
    "code.copied": "복사됨",
    "code.copyAria": "이 코드 복사",
    "notice.dismiss": "닫기",
    "error.rate_limited": "너무 빨리 보내고 있습니다. {s}초 후 다시 시도하세요.",
    "error.rate_limited_now": "너무 빨리 보냈습니다. 이제 다시 보낼 수 있습니다.",
    "error.busy": "지금 작성 중인 답변이 너무 많습니다. 잠시 후 다시 시도하세요.",
    "error.too_long": "메시지가 너무 깁니다.",
    "error.forbidden": "권한이 없습니다.",
    "error.not_found": "해당 답변을 찾을 수 없습니다.",
    "error.invalid": "서버가 메시지를 받지 않았습니다: {message}",
    "error.unavailable": "지금은 방에 연결할 수 없습니다. 메시지를 입력창에 되돌려 두었으니 잠시 후 다시 보내 주세요.",
    "error.generic": "서버 오류 ({code}): {message}",
    "announce.question": "{name}님의 질문: {text}",
    "announce.message": "{name}님: {text}",
    "typing.one": "{a}님이 입력 중…",
    "typing.two": "{a}님과 {b}님이 입력 중…",
    "typing.many": "{n}명이 입력 중…",
    "announce.answer": "답변: {text}",
    "announce.answerStatus": "답변 {status}: {text}",
    "home.mine": "내가 속한 방",
    "home.noMine": "아직 속한 방이 없습니다. 방을 만들거나 초대 링크를 여세요.",
    "home.public": "공개 방",
    "home.here": "{n}명 접속 중",
    "home.private": "비공개",
    "home.create": "방 만들기",
    "home.titleLabel": "제목 (선택)",
    "home.visibility": "들어올 수 있는 사람",
    "home.publicChoice": "공개: 누구나 찾아서 들어올 수 있음",
    "home.privateChoice": "비공개: 초대한 사람만",
    "home.createSubmit": "방 만들기",
    "home.createInvalid":
      "방 이름에는 영문자, 숫자, “-”, “_”만 쓸 수 있습니다(공백·한글·기타 문자 불가).",
    "home.createTaken": "이미 있는 이름입니다. 다른 이름을 고르세요.",
    "role.owner": "방장",
    "role.moderator": "운영자",
    "role.member": "멤버",
    "notice.title": "죄송합니다",
    "notice.notFound": "그런 방이 없습니다.",
    "invite.button": "초대",
    "invite.panelTitle": "사람 초대하기",
    "invite.expiresLabel": "유효 기간",
    "invite.1h": "1시간",
    "invite.1d": "1일",
    "invite.7d": "7일",
    "invite.usesLabel": "인원",
    "invite.onePerson": "1명",
    "invite.people": "{n}명",
    "invite.make": "링크 만들기",
    "invite.link": "초대 링크",
    "invite.made": "{time}까지 유효 · 사용 가능 횟수: {n}",
    "invite.copied": "복사됨",
    "invite.failed": "링크를 만들 수 없습니다: {message}",
    "invite.created": "초대 링크",
    "invite.share": "방에 초대할 사람에게 이 링크를 보내세요. 로그인한 뒤 링크를 열고 참여하면 됩니다.",
    "invite.maxUses": "사용 가능 횟수: {n}",
    "invite.expires": "이 링크의 유효 기간:",
    "invite.back": "방으로 돌아가기",
    "invite.eyebrow": "방에 초대되었습니다",
    "invite.by": "{name}님의 초대",
    "invite.join": "방에 참여하기",
    "invite.alreadyIn": "이미 이 방의 멤버입니다.",
    "invite.open": "방 열기",
    "invite.unusableTitle": "이 초대는 사용할 수 없습니다",
    "invite.expired": "초대가 만료되었습니다. 보낸 사람에게 새 링크를 요청하세요.",
    "invite.usedUp": "이 초대는 허용된 횟수만큼 모두 사용되었습니다. 보낸 사람에게 새 링크를 요청하세요.",
    "invite.gone": "유효하지 않은 초대 링크입니다. 링크가 바뀌었거나 취소되었습니다.",
    "invite.signIn": "초대를 수락하려면 로그인하세요. 게스트는 방에 참여할 수 없습니다.",
    "invite.notAllowed": "방장과 운영자만 사람을 초대할 수 있습니다.",
    "invite.badChoice": "링크의 유효 기간과 인원을 고르세요.",
    "settings.title": "방 설정",
    "settings.fix": "고쳐야 할 설정이 있습니다. 아래를 확인하세요. 아무것도 저장되지 않았습니다.",
    "settings.roomTitle": "제목",
    "settings.description": "설명",
    "settings.allowGuests": "게스트 입장 허용 (공개 방만 해당, 비공개 방은 게스트를 받지 않음)",
    "settings.assistantName": "어시스턴트 이름",
    "settings.assistantNameHint": "한 단어: @이름으로 부릅니다. 비우면 “assistant”.",
    "settings.model": "모델",
    "settings.temperature": "온도(temperature)",
    "settings.temperatureHint": "0~2, 낮을수록 일관됩니다. 비우면 모델 기본값.",
    "settings.collection": "지식 컬렉션",
    "settings.collectionHint":
      "답변의 근거가 되는 문서 모음(manage.py ingest --collection 이름). 비우면 서버 기본값.",
    "settings.systemPrompt": "시스템 프롬프트",
    "settings.systemPromptHint":
      "이 방에서 어시스턴트가 답하는 방식(최대 4,000자). 멤버에게는 보이지 않습니다. 비우면 서버 기본값.",
    "settings.save": "저장",
    "settings.cancel": "취소",
    "settings.notAllowed": "방장만 방 설정을 바꿀 수 있습니다.",
    "settings.error.required": "필수 항목입니다. 방에는 제목이 있어야 합니다.",
    "settings.error.max_length": "너무 깁니다. 최대 {limit_value}자입니다(현재 {show_value}자).",
    "settings.error.invalid_choice": "{value}은(는) 이 서버에서 쓸 수 있는 모델이 아닙니다.",
    "settings.error.collection":
      "컬렉션 이름은 A–Z a–z 0–9 . _ - 로 된 3~63자이며, 영문자나 숫자로 시작하고 끝나야 하고, “..”를 포함하거나 IP 주소일 수 없습니다.",
    "settings.error.assistant_name":
      "어시스턴트 이름은 문자, 숫자, “-”, “_”로 된 40자 이하의 한 단어입니다.",
    "settings.error.min_value": "{limit_value} 이상이어야 합니다.",
    "settings.error.max_value": "{limit_value} 이하여야 합니다.",
    "settings.error.invalid": "숫자를 입력하거나 비워 두세요.",
    "settings.error.unicode": "올바른 유니코드 텍스트가 아닙니다.",
    "room.settingsChanged": "방 설정이 바뀌었습니다.",
    "documents.button": "문서",
    "documents.title": "이 방의 문서",
    "documents.intro": "비서는 공용 지식과 함께 이 문서들을 바탕으로 답합니다.",
    "documents.choose": "파일 선택",
    "documents.drop": "또는 여기에 끌어다 놓기",
    "documents.limits": "파일당 최대 {size}: {types}. 같은 이름으로 올리면 바뀝니다.",
    "documents.empty": "아직 문서가 없습니다.",
    "documents.meta": "{size} · 구절 {chunks}개 · {name} · {time}",
    "documents.delete": "삭제",
    "documents.deleteAria": "{name} 삭제",
    "documents.deleteConfirm": "{name}을(를) 삭제할까요? 비서가 곧바로 사용하지 않게 됩니다.",
    "documents.uploading": "올리는 중…",
    "documents.indexing": "색인하는 중… {percent}%",
    "documents.done": "검색 가능 · 구절 {chunks}개",
    "documents.failed": "실패: {message}",
    "documents.addedNotice": "{who} 님이 {name}을(를) 추가했습니다. 이제 비서가 이 문서로 답할 수 있습니다.",
    "documents.replacedNotice": "{who} 님이 {name}을(를) 새 버전으로 바꿨습니다. 이제 비서가 새 버전을 씁니다.",
    "documents.deletedNotice": "{who} 님이 {name}을(를) 삭제했습니다.",
    "documents.error.too_long": "{name}은(는) 너무 커서 올릴 수 없습니다. {message}",
    "documents.error.limit_reached": "{name}을(를) 추가하지 못했습니다: 이 방의 문서 한도가 찼습니다. {message}",
    "documents.error.unsupported_type": "{name}은(는) 비서가 읽을 수 있는 문서 형식이 아닙니다. {message}",
    "documents.error.invalid": "{name}을(를) 읽을 수 없습니다: {message}",
    "documents.error.forbidden": "방장과 관리자만 문서를 추가하거나 삭제할 수 있습니다.",
    "documents.error.conflict": "{name}은(는) 아직 색인하는 중입니다. 끝날 때까지 기다려 주세요.",
    "documents.error.not_found": "{name}은(는) 이제 이 방에 없습니다.",
    "documents.error.generic": "{name}: 문제가 생겼습니다 ({message}).",
    "settings.useShared": "이 방의 문서뿐 아니라 공용 지식에서도 찾아 답하기",
    "time.yesterday": "어제",
  },
};

export const LANGUAGES = Object.keys(STRINGS);
const STORAGE_KEY = "roomchat.lang";
let current = "en";
const listeners = new Set();

function supported(tag) {
  if (!tag) return null;
  const base = String(tag).toLowerCase().split("-")[0];
  return LANGUAGES.includes(base) ? base : null;
}

/** The language to use: the saved toggle, else the browser's, else the server's default. */
export function pickLanguage(serverDefault) {
  let saved = null;
  try {
    saved = window.localStorage.getItem(STORAGE_KEY);
  } catch {
    /* storage may be disabled */
  }
  if (supported(saved)) return supported(saved);
  for (const tag of navigator.languages || [navigator.language]) {
    if (supported(tag)) return supported(tag);
  }
  return supported(serverDefault) || "en";
}

export function getLanguage() {
  return current;
}

/** Locale tag for Intl formatting. */
export function locale() {
  return current === "ko" ? "ko-KR" : "en";
}

/** The string for `key` in the current language, with `{name}` placeholders filled in. */
export function t(key, args = {}) {
  const table = STRINGS[current] || STRINGS.en;
  const template = table[key] ?? STRINGS.en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (m, name) => (name in args ? String(args[name]) : m));
}

function argsOf(el) {
  const raw = el.getAttribute("data-i18n-args");
  if (!raw) return {};
  try {
    return JSON.parse(raw);
  } catch {
    return {};
  }
}

/** Rewrite every element under `root` that carries data-i18n / data-i18n-attr. */
export function applyI18n(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.getAttribute("data-i18n"), argsOf(el));
  }
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    const args = argsOf(el);
    for (const pair of el.getAttribute("data-i18n-attr").split(",")) {
      const [attr, key] = pair.split(":").map((s) => s.trim());
      if (attr && key) el.setAttribute(attr, t(key, args));
    }
  }
}

/** Switch language, remember it, update the document and tell listeners. */
export function setLanguage(lang, { persist = true } = {}) {
  current = supported(lang) || "en";
  if (persist) {
    try {
      window.localStorage.setItem(STORAGE_KEY, current);
    } catch {
      /* ignore */
    }
  }
  document.documentElement.lang = current;
  applyI18n(document);
  for (const fn of listeners) fn(current);
}

export function onLanguageChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Read the page's JSON config (rendered by Django's json_script). */
export function pageConfig() {
  const el = document.getElementById("page-config");
  if (!el) return {};
  try {
    return JSON.parse(el.textContent || "{}") || {};
  } catch {
    return {};
  }
}

/** Choose the language for this page and wire up every [data-lang-toggle] button. */
export function initI18n(config = pageConfig()) {
  setLanguage(pickLanguage(config.languageCode), { persist: false });
  for (const button of document.querySelectorAll("[data-lang-toggle]")) {
    button.addEventListener("click", () => setLanguage(current === "ko" ? "en" : "ko"));
  }
}

// --- Formatting -----------------------------------------------------------------------------

/** A short clock time for today, else a date and time, in the current locale. */
export function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const now = new Date();
  const sameDay = date.toDateString() === now.toDateString();
  const options = sameDay
    ? { hour: "numeric", minute: "2-digit" }
    : { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" };
  return new Intl.DateTimeFormat(locale(), options).format(date);
}

/** Full date and time, for a tooltip. */
export function formatFullTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return new Intl.DateTimeFormat(locale(), { dateStyle: "full", timeStyle: "medium" }).format(date);
}

/** "3 minutes ago" / "3분 전". */
export function formatRelative(iso, now = Date.now()) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const seconds = Math.round((date.getTime() - now) / 1000);
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: "auto" });
  const abs = Math.abs(seconds);
  if (abs < 60) return rtf.format(seconds, "second");
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
  if (abs < 86400 * 30) return rtf.format(Math.round(seconds / 86400), "day");
  return new Intl.DateTimeFormat(locale(), { dateStyle: "medium" }).format(date);
}
