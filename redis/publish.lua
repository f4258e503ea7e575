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
--                                      the same recipient and the same type and data, stores
--                                      and publishes nothing and returns the first call's id;
--                                      with other type or data it fails (NOTIFY_IDEMPOTENCY_CONFLICT).
-- ARGV[9]  idempotency ttl (optional)  seconds a key is remembered (IDEMPOTENCY_TTL_S)
--
-- Returns the event id (`<ms>-<seq>.<tag>`, sent to browsers as the SSE `id:`),
-- or nil when history is off. The message it publishes:
--   "\30" <id or ''> "\n" <type> "\n" <recipient as a JSON string> "\n" <data>
-- (a leading 0x1E can never start a JSON text, so plain events stay unambiguous).
-- The copy on <channel> in 'both' mode has one space after the recipient's JSON:
-- older instances read it as any other, and instances that also receive the
-- recipient's own channel know to skip it.

local channel, recipient, etype, data = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local size, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local routing, idem, idem_ttl = ARGV[7] or 'classic', ARGV[8] or '', tonumber(ARGV[9] or '1')

local function fail(msg) return redis.error_reply('NOTIFY_BAD_ARGUMENT ' .. msg) end

if #ARGV ~= 6 and #ARGV ~= 9 then return fail('expected 6 or 9 arguments') end
if #KEYS ~= (idem == '' and 1 or 2) then return fail('expected 1 key, or 2 with an idempotency key') end
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

local fingerprint = ''
if idem ~= '' then
  fingerprint = redis.sha1hex(etype .. '\n' .. data)
  local seen = redis.call('GET', KEYS[2])
  if seen then
    if string.sub(seen, 1, 40) ~= fingerprint then
      return redis.error_reply('NOTIFY_IDEMPOTENCY_CONFLICT this idempotency key was used for another event')
    end
    -- A write, so that a WAIT after this call also covers the first call's
    -- write, made on another connection perhaps.
    redis.call('EXPIRE', KEYS[2], idem_ttl)
    local first = string.sub(seen, 42)
    if first == '' then return false end
    return first
  end
end

local id = ''
if size > 0 then
  local entry = redis.call('XADD', KEYS[1], 'MAXLEN', size, '*', 't', etype, 'd', data)
  redis.call('EXPIRE', KEYS[1], ttl)
  id = entry .. '.' .. string.sub(redis.sha1hex(recipient), 1, 8)
end
if idem ~= '' then redis.call('SET', KEYS[2], fingerprint .. ' ' .. id, 'EX', idem_ttl) end

local head = '\30' .. id .. '\n' .. etype .. '\n' .. cjson.encode(recipient)
local sent = false
if routing ~= 'classic' then
  -- pcall: SPUBLISH is unknown before Redis 7 (or renamed away); fall back then.
  local reply = redis.pcall('SPUBLISH', channel .. ':{' .. recipient .. '}', head .. '\n' .. data)
  sent = type(reply) ~= 'table' or reply.err == nil
end
if not sent then
  redis.call('PUBLISH', channel, head .. '\n' .. data)
elseif routing == 'both' then
  redis.call('PUBLISH', channel, head .. ' \n' .. data)
end
if id == '' then return false end
return id
