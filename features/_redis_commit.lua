-- Outpost feature state: turn blocked rows of the last score call into attempts (only sent when some are blocked).
-- ARGV: prefix, weight of the typical amount, then operations of 3 values each ('b' operations first):
--   'b', account hex, event member       -> mark the event blocked (flags |= 16), if still stored
--   's', account hex, 'member|cnt'       -> forget a counterparty ('c..') or device ('d..') the blocked row registered
--   'e', account hex, 'typical|left|cnt' -> the typical amount recomputed without the blocked rows
-- cnt is the account's row count this call left. When it has grown since, another replica applied rows to the
-- account in between: a counterparty is forgotten only if no stored non-blocked event uses it, a device is kept
-- (events do not record devices), and the typical amount is corrected for the rows applied on top of it.
local P = ARGV[1]
local WEIGHT = tonumber(ARGV[2])

local function rows_since(acct, cnt)
  return (tonumber(redis.call('HGET', P .. ':h:' .. acct, 'cnt')) or 0) - cnt
end

local function used_elsewhere(acct, cp)
  for _, m in ipairs(redis.call('ZRANGE', P .. ':e:' .. acct, 0, -1)) do
    local flags, ecp = string.match(m, '^%d+|%-?%d+|(%d+)|%-?%d+|(%w+)|')
    if ecp == cp and bit.band(tonumber(flags), 16) == 0 then
      return true
    end
  end
  return false
end

local i = 3
while i <= #ARGV do
  local op, acct, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if op == 'b' then
    local ekey = P .. ':e:' .. acct
    local id, t, flags, rest = string.match(value, '^(%d+)|(%-?%d+)|(%d+)|(.*)$')
    if redis.call('ZREM', ekey, value) == 1 then
      local blocked = bit.bor(tonumber(flags), 16)
      redis.call('ZADD', ekey, t, id .. '|' .. t .. '|' .. string.format('%d', blocked) .. '|' .. rest)
    end
  elseif op == 's' then
    local member, cnt = string.match(value, '^(%w+)|(%d+)$')
    local keep = false
    if rows_since(acct, tonumber(cnt)) > 0 then
      keep = string.sub(member, 1, 1) ~= 'c' or used_elsewhere(acct, string.sub(member, 2))
    end
    if not keep then
      redis.call('SREM', P .. ':s:' .. acct, member)
    end
  elseif op == 'e' then
    local typical, left, cnt = string.match(value, '^([^|]+)|([^|]+)|(%d+)$')
    local v = tonumber(typical)
    local later = rows_since(acct, tonumber(cnt))
    if later > 0 then
      -- Each later row scaled the blocked rows' share of the typical amount by (1 - weight).
      local now = tonumber(redis.call('HGET', P .. ':h:' .. acct, 'ewma')) or 0
      local kept = (1.0 - WEIGHT) ^ later
      local l = tonumber(left)
      if v == 0 then
        -- No amount is left without the blocked rows: the later rows' own mean (exact for one row).
        v = (now - l * kept) / (1.0 - kept)
      else
        v = now + (v - l) * kept
      end
    end
    redis.call('HSET', P .. ':h:' .. acct, 'ewma', string.format('%.17g', v))
  end
  i = i + 3
end
return 1
