"""The Lua scripts of `chat.realtime.redis_log`: each runs atomically inside Redis.

Keys of a room (all share the hash tag `{room}`, so they live in one slot of a cluster):

- `seq`: the last seq given out; its absence means Redis holds nothing for the room (seed it);
- `log`: a Stream of frames, entry id `<seq>-1`, field `f` = the frame JSON (with its seq);
- `order` (list of message ids, oldest first) and `msgs` (hash): the materialised view of the
  latest messages. `msgs[id]` is the message as it started; `msgs[id:sources]` and
  `msgs[id:end]` are JSON patches folded over it when rendering (Lua never decodes JSON);
  `msgs[id:feedback]` the latest `answer.feedback` counts, with their rev in `msgs[id:fbrev]`;
- `live`: a set of the ids of answers still being written, and `text:<id>` their text so far;
- `times`: a sorted set mapping each second (score) to the first seq appended in it, so the
  log can be trimmed by age although its entry ids are seqs, not times;
- `redacted`: a set of the ids of messages redacted while the log may hold their events;
  `msgs[id:redacted]` is the redaction patch folded last. The stream cannot be rewritten, so
  readers scrub what it holds of them (chat.realtime.redaction); what is appended for them
  after the redaction (an answer still being written) is stored redacted;
- `appended` (hash: append token -> seq) and `tokens` (list, oldest first): the last
  `RECENT_APPENDS` appends, so an append retried after its reply was lost (the connection
  broke on the way back) returns the seq it got the first time instead of appending twice.

Every script that needs the room returns -1 when `seq` is missing: the caller seeds the room
from the database and calls again.
"""

from __future__ import annotations

# Appends remembered per room for retries: far more than can be in flight at once.
RECENT_APPENDS = 256

# KEYS: seq, log, order, msgs, live, times, text (this answer's text; unused for questions
#       and messages), appended, tokens, redacted
# ARGV: kind, frame body (the event's JSON without its leading "{"), id (message or answer),
#       payload (delta text | message JSON | sources JSON | end patch JSON | redaction patch),
#       max events, view size, retention seconds, ttl seconds, append token, recent appends
#       kept, then for an `answer.end` its redacted frame body and end patch, for an
#       `answer.sources` with a `query` its redacted frame body and its question's id, for an
#       `answer.feedback` its rev and "" (else "", "")
# Returns the new seq (or the first try's, for a token already appended); 0 when the event
# belongs to an answer that is not live (nothing is appended: an answer ends exactly once and
# nothing of it follows its end); -1 (not seeded).
APPEND = """
local kind, id = ARGV[1], ARGV[3]
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local first = redis.call('HGET', KEYS[8], ARGV[9])
if first then return tonumber(first) end
local part_of_answer = kind == 'answer.delta' or kind == 'answer.sources' or kind == 'answer.end'
if part_of_answer and redis.call('SISMEMBER', KEYS[5], id) == 0 then return 0 end
-- The rest of an answer redacted while it was being written is stored redacted.
local redacted = (kind == 'answer.delta' or kind == 'answer.end'
                  or (kind == 'answer.sources' and ARGV[11] ~= ''))
  and redis.call('SISMEMBER', KEYS[10], id) == 1
if kind == 'answer.sources' and ARGV[11] ~= '' and not redacted and ARGV[12] ~= '' then
  -- Its query holds its question's words: gone with the question too.
  redacted = redis.call('SISMEMBER', KEYS[10], ARGV[12]) == 1
end
local body = ARGV[2]
if redacted then
  body = kind == 'answer.delta' and ('"type":"message.redacted","id":"' .. id .. '"}') or ARGV[11]
end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], seq .. '-1',
           'f', '{"seq":' .. seq .. ',' .. body)
if kind == 'answer.delta' then
  -- The hot path. APPEND returns the new length: equal to this text's, the key is new.
  if not redacted and redis.call('APPEND', KEYS[7], ARGV[4]) == #ARGV[4] then
    redis.call('EXPIRE', KEYS[7], ARGV[8])
  end
elseif kind == 'question' or kind == 'message' or kind == 'answer.start' then
  -- HSET returns 1 for a new field: only then does the message take a place in the order
  -- (like assigning an existing key of an OrderedDict, which keeps its place).
  -- The message keeps the seq that posted it: prepended to its JSON (never decoded here).
  local stored = '{"seq":' .. seq .. ',' .. string.sub(ARGV[4], 2)
  if redis.call('HSET', KEYS[4], id, stored) == 1 then
    local size = redis.call('RPUSH', KEYS[3], id)
    while size > tonumber(ARGV[6]) do
      local old = redis.call('LPOP', KEYS[3])
      redis.call('HDEL', KEYS[4], old, old .. ':sources', old .. ':end', old .. ':redacted',
                 old .. ':feedback', old .. ':fbrev')
      size = size - 1
    end
  end
  if kind == 'answer.start' then
    redis.call('SADD', KEYS[5], id)
    redis.call('DEL', KEYS[7])
  end
elseif kind == 'answer.sources' then
  if redis.call('HEXISTS', KEYS[4], id) == 1 then
    redis.call('HSET', KEYS[4], id .. ':sources', ARGV[4])
  end
elseif kind == 'answer.end' then
  redis.call('SREM', KEYS[5], id)
  redis.call('DEL', KEYS[7])
  if redis.call('HEXISTS', KEYS[4], id) == 1 then
    redis.call('HSET', KEYS[4], id .. ':end', redacted and ARGV[12] or ARGV[4])
  end
elseif kind == 'answer.feedback' then
  -- ARGV[11] is the change's rev: counts from an earlier change appended late do not win.
  if redis.call('HEXISTS', KEYS[4], id) == 1
     and tonumber(ARGV[11]) > tonumber(redis.call('HGET', KEYS[4], id .. ':fbrev') or '0') then
    redis.call('HSET', KEYS[4], id .. ':feedback', ARGV[4], id .. ':fbrev', ARGV[11])
  end
elseif kind == 'message.redacted' then
  redis.call('SADD', KEYS[10], id)
  redis.call('EXPIRE', KEYS[10], ARGV[8])
  if redis.call('HEXISTS', KEYS[4], id) == 1 then
    redis.call('HSET', KEYS[4], id .. ':redacted', ARGV[4])
  end
  redis.call('DEL', KEYS[7])
end
redis.call('HSET', KEYS[8], ARGV[9], seq)
if redis.call('RPUSH', KEYS[9], ARGV[9]) > tonumber(ARGV[10]) then
  redis.call('HDEL', KEYS[8], redis.call('LPOP', KEYS[9]))
end
-- Once per second per room: note the first seq of this second, trim events older than the
-- retention, and push back the expiry of an idle room's keys.
local now = tonumber(redis.call('TIME')[1])
local last = redis.call('ZRANGE', KEYS[6], -1, -1, 'WITHSCORES')
if #last == 0 or tonumber(last[2]) < now then
  redis.call('ZADD', KEYS[6], now, seq)
  local cutoff = now - tonumber(ARGV[7])
  local oldest = redis.call('ZRANGEBYSCORE', KEYS[6], cutoff, '+inf', 'LIMIT', 0, 1)
  redis.call('XTRIM', KEYS[2], 'MINID', oldest[1] .. '-0')
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. cutoff)
  for _, i in ipairs({1, 2, 3, 4, 5, 6, 8, 9}) do redis.call('EXPIRE', KEYS[i], ARGV[8]) end
  if redis.call('EXISTS', KEYS[10]) == 1 then redis.call('EXPIRE', KEYS[10], ARGV[8]) end
end
return seq
"""

# KEYS: seq, order, msgs, live ; ARGV: limit, text key prefix (+ answer id = its text key)
# Returns {seq, then per message: id, message, sources, end, redaction, feedback, live text or
# nil},
# or -1.
SNAPSHOT = """
local seq = redis.call('GET', KEYS[1])
if not seq then return -1 end
local out = {seq}
local limit = tonumber(ARGV[1])
if limit > 0 then
  for _, id in ipairs(redis.call('LRANGE', KEYS[2], -limit, -1)) do
    local parts = redis.call('HMGET', KEYS[3], id, id .. ':sources', id .. ':end',
                             id .. ':redacted', id .. ':feedback')
    local text = false
    if redis.call('SISMEMBER', KEYS[4], id) == 1 then
      text = redis.call('GET', ARGV[2] .. id) or ''
    end
    out[#out + 1] = id
    out[#out + 1] = parts[1]
    out[#out + 1] = parts[2]
    out[#out + 1] = parts[3]
    out[#out + 1] = parts[4]
    out[#out + 1] = parts[5]
    out[#out + 1] = text
  end
end
return out
"""

# KEYS: seq, log, redacted ; ARGV: after
# Returns {the redacted ids, the entries with seq > after} (either may be empty), 0 when some
# of the entries are no longer held (trimmed, lost, or `after` is beyond the last seq), or -1
# (not seeded).
READ_AFTER = """
local seq = redis.call('GET', KEYS[1])
if not seq then return -1 end
seq = tonumber(seq)
local after = tonumber(ARGV[1])
if after > seq then return 0 end
if after == seq then return {{}, {}} end
-- The stream is consecutive from its first entry to `seq`: is `after + 1` still in it?
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
if #first == 0 or tonumber(string.match(first[1][1], '^%d+')) > after + 1 then return 0 end
return {redis.call('SMEMBERS', KEYS[3]), redis.call('XRANGE', KEYS[2], (after + 1) .. '-0', '+')}
"""

# KEYS: seq, live, msgs, text ; ARGV: answer id
# Returns {message, sources, end, text so far} for a live answer, nil if not live, or -1.
LIVE_ANSWER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return nil end
local parts = redis.call('HMGET', KEYS[3], ARGV[1], ARGV[1] .. ':sources', ARGV[1] .. ':end')
return {parts[1], parts[2], parts[3], redis.call('GET', KEYS[4]) or ''}
"""

# KEYS: seq, live. The ids of the room's answers still being written, or -1. One room's keys
# per call (one slot of a cluster): the orphan reaper pipelines one call per room.
LIVE_ANSWERS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('SMEMBERS', KEYS[2])
"""

# KEYS: seq, log, order, msgs, live, times, redacted ; ARGV: base seq, ttl seconds, text key
# prefix,
# then four per message (oldest first): id, message JSON, "1" if live else "0", its text.
# Returns 1 if it seeded, 0 if another worker got there first (SET NX semantics: all agree).
SEED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
-- Leftovers of a room whose keys expired one by one: start clean.
for _, id in ipairs(redis.call('SMEMBERS', KEYS[5])) do redis.call('DEL', ARGV[3] .. id) end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
for i = 4, #ARGV, 4 do
  local id = ARGV[i]
  redis.call('RPUSH', KEYS[3], id)
  redis.call('HSET', KEYS[4], id, ARGV[i + 1])
  if ARGV[i + 2] == '1' then
    redis.call('SADD', KEYS[5], id)
    redis.call('SET', ARGV[3] .. id, ARGV[i + 3], 'EX', ARGV[2])
  end
end
for i = 3, 5 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return 1
"""
