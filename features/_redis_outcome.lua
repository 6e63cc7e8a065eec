-- Outpost feature state: record one labelled outcome on a counterparty, known from reported_at on.
-- ARGV: prefix, counterparty hex, reported_at us, fraud ('1' or '0')
local P = ARGV[1]
local id = redis.call('INCR', P .. ':oseq')
redis.call('ZADD', P .. ':oa:' .. ARGV[2], ARGV[3], id)
if ARGV[4] == '1' then
  redis.call('ZADD', P .. ':of:' .. ARGV[2], ARGV[3], id)
end
redis.call('INCR', P .. ':outcomes')
return id
