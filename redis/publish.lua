-- notify-sse: store one event in a recipient's history and publish it, atomically.
-- Shipped with the service; call it from any language (EVAL, or SCRIPT LOAD +
-- EVALSHA). One call touches one recipient's keys and channel only, all in one
-- Redis Cluster hash slot, so it runs unchanged on a Cluster; an event for
-- several recipients is one call per recipient.
--
-- KEYS[1]  <channel>:history:{<recipient>}        the recipient's history (a Stream)
-- KEYS[2]  <channel>:idem:{<recipient>}:<ARGV[8]>  the idempotency marker; only when ARGV[8] is not ''
-- ARGV[1]  channel                     NOTIFY_CHANNEL, e.g. notifications
-- ARGV[2]  recipient                   user id as a string, e.g. 42 (not starting with '}')
-- ARGV[3]  type                        SSE event name, or '' for none
-- ARGV[4]  data                        the event, a JSON object (sent as `data:`)
-- ARGV[5]  history size                entries kept (HISTORY_SIZE); 0 = live only
-- ARGV[6]  history ttl                 seconds the history lives after its last write (HISTORY_TTL_S)
-- ARGV[7]  routing (optional)          'shard': publish on the recipient's own channel
--                                      <channel>:{<recipient>} (SPUBLISH), where only the
--                                      instances holding a stream of theirs listen;
--                                      'both': that, plus a copy on <channel> for instances
--                                      of a version without per-user routing (PUBLISH_CLASSIC_COPY);
--                                      'classic' (the default, what 6-argument callers get):
--                                      only on <channel>, which every instance reads.
--                                      Without sharded pub/sub (Redis < 7), 'shard' and
--                                      'both' fall back to 'classic'.
-- ARGV[8]  idempotency key (optional)  '' for none; else at most 200 visible ASCII characters.
--                                      A call with a key stored within ARGV[9] seconds, for
--                                      the same recipient and the same type, data, storage and
--                                      collapse key, stores and publishes nothing and returns the
--                                      first call's id (nil for a live one); with any of them
--                                      different it fails (NOTIFY_IDEMPOTENCY_CONFLICT).
-- ARGV[9]  idempotency ttl (optional)  seconds a key is remembered (IDEMPOTENCY_TTL_S)
-- ARGV[10] storage (optional)          'store' (the default): kept in the history, with an id;
--                                      'live': delivered to the streams open now, not stored,
--                                      no id (progress ticks no page needs after a reload).
-- ARGV[11] collapse key (optional)     '' for none; else 1 to 128 of [A-Za-z0-9_.:-]. The
--                                      event replaces, in the history, the last stored event
--                                      of this recipient with the same key (removed; the new
--                                      one gets a new, higher id): a job's progress takes one
--                                      entry, and a page that comes back gets the latest only.
--                                      Not with 'live' (nothing to replace with).
-- ARGV[12] reply (optional)            'id' (the default, what 6, 9 and 11-argument callers get):
--                                      the event id or nil, as before. 'delivery': a 3-element
--                                      array { id or nil, instances or nil, route } that also says
--                                      whether anyone got the event live (see "Returns" below).
-- KEYS[#KEYS] <channel>:collapse:{<recipient>}    the collapse index (a Hash: key -> the ids of
--                                      its latest event and of those it replaced); only with a
--                                      collapse key, last (after the idempotency marker). A call
--                                      without one touches the history alone (and the marker):
--                                      on a Cluster, a slot being migrated then answers it with
--                                      ASK, where a call of several keys gets TRYAGAIN.
--
-- How a replaced event stays resumable: a reader whose last event id was
-- replaced (removed) must not be told `resync`. The entry that replaces one
-- lists, in field 'r', the ids it replaced, newest first (the replaced one's
-- own list carried on, at most 100 ids); and once a recipient has used a
-- collapse key, every entry carries in field 'w' the newest entry id ever
-- trimmed from the history ('0-0': none): a call stores that way when the
-- newest entry has 'w' (11 or 12 arguments; the history says it, not the index). A reader whose id is gone resumes
-- after it when the newest entry's 'w' is not after that id (nothing after it
-- was trimmed) and a stored entry's 'r' names it (it was replaced, here; not
-- lost in a failover); otherwise `resync`, as before. Entries written without
-- the index (6 or 9 arguments, an older script) carry neither field, so
-- readers then fall back to `resync` for a missing id: never a silent gap.
--
-- Returns the event id (`<ms>-<seq>.<tag>`, sent to browsers as the SSE `id:`),
-- or nil when history is off or the event is live. With ARGV[12] 'delivery':
--   { id or nil, instances, route }
--   route 'shard'   published on the recipient's own channel only: instances is SPUBLISH's
--                   count, the instances holding a stream of the recipient right then (each
--                   has one subscriber connection per master); 0: nobody got it live.
--   route 'both'    also the classic copy: instances counts this version's instances only;
--                   an instance of an older version may have delivered the copy: > 0 means
--                   someone got it live, 0 means unknown.
--   route 'classic' PUBLISH on <channel> only (routing 'classic', or no sharded pub/sub):
--                   every instance receives it, whoever it is for: instances is nil (unknown).
--   route 'none'    an idempotent retry: nothing published by this call; instances nil.
-- A new argument rather than a new reply for everyone: callers in other
-- languages parse the id string, and they keep getting exactly that.
--
-- The message it publishes:
--   "\30" <id or ''> "\n" <type> "\n" <recipient as a JSON string> "\n" <data>
-- (a leading 0x1E can never start a JSON text, so plain events stay unambiguous).
-- The copy on <channel> in 'both' mode has one space after the recipient's JSON:
-- older instances read it as any other, and instances that also receive the
-- recipient's own channel know to skip it.

local channel, recipient, etype, data = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local size, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local routing, idem, idem_ttl = ARGV[7] or 'classic', ARGV[8] or '', tonumber(ARGV[9] or '1')
local storage, ckey = ARGV[10] or 'store', ARGV[11] or ''
local reply = ARGV[12] or 'id'
-- Ids a replacing entry lists in 'r' at most: a reader away for more
-- replacements of one key than this gets `resync`.
local REPLACED_KEPT = 100

local function fail(msg) return redis.error_reply('NOTIFY_BAD_ARGUMENT ' .. msg) end

if #ARGV ~= 6 and #ARGV ~= 9 and #ARGV ~= 11 and #ARGV ~= 12 then return fail('expected 6, 9, 11 or 12 arguments') end
local index = nil
if ckey ~= '' then index = KEYS[#KEYS] end
local wanted_keys = 1 + (idem == '' and 0 or 1) + (index and 1 or 0)
if #KEYS ~= wanted_keys then
  return fail('expected ' .. wanted_keys .. ' keys: the history, the idempotency marker (with an idempotency key), the collapse index (with a collapse key)')
end
-- 256 UTF-16 code units, as the service counts them: one per UTF-8 sequence
-- (bytes that are not continuation bytes), two for a 4-byte sequence.
local function utf16_length(s)
  local _, units = string.gsub(s, '[^\128-\191]', '')
  local _, astral = string.gsub(s, '[\240-\247]', '')
  return units + astral
end
if recipient == nil or #recipient == 0 or #recipient > 1024 or utf16_length(recipient) > 256 then
  return fail('recipient must be 1 to 256 characters')
end
-- '{}' is an empty hash tag: Redis would hash the whole key, and the history, the
-- marker and the channel would land in different Cluster slots.
if string.sub(recipient, 1, 1) == '}' then return fail('recipient must not start with }') end
if KEYS[1] ~= channel .. ':history:{' .. recipient .. '}' then
  return fail('key must be ' .. channel .. ':history:{' .. recipient .. '}')
end
if etype ~= '' and (#etype > 64 or not string.match(etype, '^[%w_.:%-]+$')) then
  return fail('type must match ^[A-Za-z0-9_.:-]{1,64}$')
end
if etype == 'auth-expired' or etype == 'resync' or etype == 'position' then return fail('type "' .. etype .. '" is reserved') end
-- A private decoder that refuses NaN, Infinity and hex numbers, which the default
-- one accepts but a browser's JSON.parse does not. (Configuring the shared cjson
-- would change it for every other script on the server.)
local strict = cjson.new()
strict.decode_invalid_numbers(false)
if not string.match(data, '^%s*{') or not pcall(strict.decode, data) then
  return fail('data must be a JSON object')
end
if size == nil or size < 0 or size ~= math.floor(size) then return fail('history size must be an integer >= 0') end
if ttl == nil or ttl < 1 or ttl ~= math.floor(ttl) then return fail('history ttl must be an integer >= 1') end
if routing ~= 'shard' and routing ~= 'both' and routing ~= 'classic' then
  return fail("routing must be 'shard', 'both' or 'classic'")
end
if idem ~= '' then
  if #idem > 200 or not string.match(idem, '^[!-~]+$') then return fail('idempotency key must be 1 to 200 visible ASCII characters') end
  if KEYS[2] ~= channel .. ':idem:{' .. recipient .. '}:' .. idem then
    return fail('key 2 must be ' .. channel .. ':idem:{' .. recipient .. '}:' .. idem)
  end
  if idem_ttl == nil or idem_ttl < 1 or idem_ttl ~= math.floor(idem_ttl) then return fail('idempotency ttl must be an integer >= 1') end
end
if reply ~= 'id' and reply ~= 'delivery' then return fail("reply must be 'id' or 'delivery'") end
if #ARGV >= 11 then
  if storage ~= 'store' and storage ~= 'live' then return fail("storage must be 'store' or 'live'") end
  if ckey ~= '' and (#ckey > 128 or not string.match(ckey, '^[%w_.:%-]+$')) then
    return fail('collapse key must match ^[A-Za-z0-9_.:-]{1,128}$')
  end
  if ckey ~= '' and storage == 'live' then return fail('a live event is not stored: it cannot have a collapse key') end
end
if index and index ~= channel .. ':collapse:{' .. recipient .. '}' then
  return fail('the last key must be ' .. channel .. ':collapse:{' .. recipient .. '}')
end

local fingerprint = ''
if idem ~= '' then
  -- The controls are part of what a retry must repeat; without them, the
  -- fingerprint is the one older versions wrote.
  local controls = ''
  if storage ~= 'store' or ckey ~= '' then controls = '\n' .. storage .. '\n' .. ckey end
  fingerprint = redis.sha1hex(etype .. '\n' .. data .. controls)
  local seen = redis.call('GET', KEYS[2])
  if seen then
    if string.sub(seen, 1, 40) ~= fingerprint then
      return redis.error_reply('NOTIFY_IDEMPOTENCY_CONFLICT this idempotency key was used for another event')
    end
    -- A write, so that a WAIT after this call also covers the first call's
    -- write, made on another connection perhaps.
    redis.call('EXPIRE', KEYS[2], idem_ttl)
    local first = string.sub(seen, 42)
    if first == '' then first = false end
    if reply == 'delivery' then return { first, false, 'none' } end
    return first
  end
end

-- A field of an entry as XRANGE returns it: { id, { name, value, ... } }.
local function field(entry, name)
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

-- Stream entry ids in order: '<ms>-<seq>', both below 2^53.
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end

-- The first n space-separated ids of a list.
local function first_ids(ids, n)
  local at = 0
  for _ = 1, n do
    at = string.find(ids, ' ', at + 1, true)
    if not at then return ids end
  end
  return string.sub(ids, 1, at - 1)
end

-- Stores with the collapse bookkeeping (see the top): replaces the key's last
-- event, trims, and records what was replaced and what was ever trimmed.
local function store_tracked(tip)
  local trimmed = '0-0'
  if tip then
    -- Written without the index: all that is known is that trimming takes the
    -- oldest first, so nothing from the oldest entry still stored on was trimmed.
    trimmed = field(tip, 'w') or redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1][1]
  end
  local fields = { 't', etype, 'd', data }
  local replaced = ''
  if ckey ~= '' then
    local last = redis.call('HGET', index, ckey)
    -- Gone already (trimmed): nothing to replace; the reader's 'w' covers it.
    if last and redis.call('XDEL', KEYS[1], first_ids(last, 1)) == 1 then
      replaced = first_ids(last, REPLACED_KEPT)
      table.insert(fields, 'r')
      table.insert(fields, replaced)
    end
    table.insert(fields, 'k')
    table.insert(fields, ckey)
  end
  local n = redis.call('XLEN', KEYS[1])
  if n >= size then
    local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', n - size + 1)
    trimmed = gone[#gone][1]
  end
  table.insert(fields, 'w')
  table.insert(fields, trimmed)
  local entry = redis.call('XADD', KEYS[1], 'MAXLEN', size, '*', unpack(fields))
  if ckey ~= '' then
    local ids = entry
    if replaced ~= '' then ids = entry .. ' ' .. replaced end
    redis.call('HSET', index, ckey, ids)
    -- Keys whose last event was trimmed are dropped now and then: the index
    -- holds at most twice the history's size, whatever the keys' churn.
    if redis.call('HLEN', index) > 2 * size then
      local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1][1]
      local all = redis.call('HGETALL', index)
      for i = 1, #all, 2 do
        if before(first_ids(all[i + 1], 1), oldest) then redis.call('HDEL', index, all[i]) end
      end
    end
    redis.call('EXPIRE', index, ttl)
  end
  return entry
end

local id = ''
if size > 0 and storage == 'store' then
  local entry
  -- A recipient that never used a collapse key: plain entries, as before.
  local tip = nil
  if #ARGV >= 11 then tip = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1] end
  if ckey ~= '' or (tip and field(tip, 'w')) then
    entry = store_tracked(tip)
  else
    entry = redis.call('XADD', KEYS[1], 'MAXLEN', size, '*', 't', etype, 'd', data)
  end
  redis.call('EXPIRE', KEYS[1], ttl)
  id = entry .. '.' .. string.sub(redis.sha1hex(recipient), 1, 8)
end
if idem ~= '' then redis.call('SET', KEYS[2], fingerprint .. ' ' .. id, 'EX', idem_ttl) end

local head = '\30' .. id .. '\n' .. etype .. '\n' .. cjson.encode(recipient)
local sent = false
local instances = false
if routing ~= 'classic' then
  -- pcall: SPUBLISH is unknown before Redis 7 (or renamed away); fall back then.
  local answer = redis.pcall('SPUBLISH', channel .. ':{' .. recipient .. '}', head .. '\n' .. data)
  sent = type(answer) ~= 'table' or answer.err == nil
  if sent then instances = answer end
end
local route = routing
if not sent then
  redis.call('PUBLISH', channel, head .. '\n' .. data)
  route = 'classic'
elseif routing == 'both' then
  redis.call('PUBLISH', channel, head .. ' \n' .. data)
end
if id == '' then id = false end
if reply == 'delivery' then return { id, instances, route } end
return id
