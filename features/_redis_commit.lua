-- Outpost feature state: turn blocked rows of the last score call into attempts (only sent when some are blocked).
-- ARGV: prefix, then operations of 3 values each:
--   'b', account hex, event member      -> mark the event blocked (flags |= 16), if still stored
--   's', account hex, set member        -> forget a counterparty ('c..') or device ('d..') the blocked row registered
--   'e', account hex, typical amount    -> the typical amount recomputed without the blocked rows
local P = ARGV[1]
local i = 2
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
    redis.call('SREM', P .. ':s:' .. acct, value)
  elseif op == 'e' then
    redis.call('HSET', P .. ':h:' .. acct, 'ewma', value)
  end
  i = i + 3
end
return 1
