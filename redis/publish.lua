-- notify-sse: store one event in a recipient's history and publish it, atomically.
-- Shipped with the service; call it from any language (EVAL, or SCRIPT LOAD +
-- EVALSHA). One call touches one recipient's key only, so it runs unchanged on a
-- Redis Cluster; an event for several recipients is one call per recipient.
--
-- KEYS[1]  <channel>:history:{<recipient>}   the recipient's history (a Stream)
-- ARGV[1]  channel                            e.g. notifications
-- ARGV[2]  recipient                          user id as a string, e.g. 42
-- ARGV[3]  type                               SSE event name, or '' for none
-- ARGV[4]  data                               the event, a JSON object (sent as `data:`)
-- ARGV[5]  history size                       entries kept (HISTORY_SIZE); 0 = live only
-- ARGV[6]  history ttl                        seconds the history lives after its last write (HISTORY_TTL_S)
--
-- Returns the event id (`<ms>-<seq>.<tag>`, sent to browsers as the SSE `id:`),
-- or nil when history is off. What it publishes on the channel:
--   "\30" <id or ''> "\n" <type> "\n" <recipient as a JSON string> "\n" <data>
-- (a leading 0x1E can never start a JSON text, so plain events stay unambiguous).

local key = KEYS[1]
local channel, recipient, etype, data = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local size, ttl = tonumber(ARGV[5]), tonumber(ARGV[6])

local function fail(msg) return redis.error_reply('NOTIFY_BAD_ARGUMENT ' .. msg) end

if #KEYS ~= 1 or #ARGV ~= 6 then return fail('expected 1 key and 6 arguments') end
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
if key ~= channel .. ':history:{' .. recipient .. '}' then
  return fail('key must be ' .. channel .. ':history:{' .. recipient .. '}')
end
if etype ~= '' and (#etype > 64 or not string.match(etype, '^[%w_.:%-]+$')) then
  return fail('type must match ^[A-Za-z0-9_.:-]{1,64}$')
end
if etype == 'auth-expired' or etype == 'resync' then return fail('type "' .. etype .. '" is reserved') end
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

local id = ''
if size > 0 then
  local entry = redis.call('XADD', key, 'MAXLEN', size, '*', 't', etype, 'd', data)
  redis.call('EXPIRE', key, ttl)
  id = entry .. '.' .. string.sub(redis.sha1hex(recipient), 1, 8)
end
redis.call('PUBLISH', channel, '\30' .. id .. '\n' .. etype .. '\n' .. cjson.encode(recipient) .. '\n' .. data)
if id == '' then return false end
return id
