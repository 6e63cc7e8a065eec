-- Outpost feature state: score a batch of rows in order, applying rows with apply=1 (one round trip).
-- Computes the same raw aggregates as features/_kernels.py score_kernel; Python turns them into features.
-- Keys are derived from the prefix (single Redis instance, not Redis Cluster):
--   P:h:<acct>  hash  last, pmax, cnt, ewma        P:e:<acct>  zset of events scored by event time
--   P:s:<acct>  set   c<counterparty> / d<device>  P:oa:<cp>, P:of:<cp>  zsets of outcomes (all / fraud)
--   P:seq, P:accounts, P:applied                   counters
-- ARGV: prefix, retention_us, weight, n,
--   keys: per row 48 hex characters (account, counterparty, device; 16 each, all zeros = none),
--   numbers: per row 5 little-endian doubles (event time us, amount fen, flags, branch code, apply)
-- Reply: { doubles (n x (33 raw + handle + inserted + ewma_before)) packed little-endian, members... }
local P = ARGV[1]
local retention = tonumber(ARGV[2])
local weight = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local keys = ARGV[5]
local numbers = ARGV[6]
local NONE = '0000000000000000'
local W = {3600000000, 86400000000, 604800000000, 2592000000000}
local W30, W7, W24 = 2592000000000, 604800000000, 86400000000
local RAW_N = 33
local ROW_FORMAT = '<' .. string.rep('d', RAW_N + 3)

local function fmt(x)
  return string.format('%d', x)
end
local function size(set)
  local c = 0
  for _ in pairs(set) do
    c = c + 1
  end
  return c
end
local OUT = {[1] = true, [3] = true, [5] = true, [6] = true, [8] = true}
local IN = {[2] = true, [4] = true, [7] = true}

local first_id = redis.call('INCRBY', P .. ':seq', n) - n
local applied, new_accounts = 0, 0
local packed = {}
local members = {}
for i = 0, n - 1 do
  local k = i * 48
  local acct, cp, dev = string.sub(keys, k + 1, k + 16), string.sub(keys, k + 17, k + 32), string.sub(keys, k + 33, k + 48)
  local t, fen, flags, branch, apply_flag = struct.unpack('<ddddd', numbers, i * 40 + 1)
  local apply = apply_flag == 1
  local typ = flags % 16
  local hkey, ekey, skey = P .. ':h:' .. acct, P .. ':e:' .. acct, P .. ':s:' .. acct
  local raw = {}
  for r = 1, RAW_N do
    raw[r] = 0
  end
  local h = redis.call('HMGET', hkey, 'last', 'pmax', 'cnt', 'ewma')
  local last, pmax = tonumber(h[1]), tonumber(h[2])
  local cnt, ewma = tonumber(h[3]) or 0, tonumber(h[4]) or 0
  local prev = nil
  if last ~= nil and last <= t then
    prev = last
  end
  local out7, out24, in7, in24, branches = {}, {}, {}, {}, {}
  local events = {}
  if last ~= nil then
    events = redis.call('ZRANGE', ekey, 0, -1)
  end
  for _, m in ipairs(events) do
    local _, et, ef, amount, ecp, ebranch = string.match(m, '^(%d+)|(%-?%d+)|(%d+)|(%-?%d+)|(%w+)|(%d+)$')
    et = tonumber(et)
    local dt = t - et
    if dt < 0 then
      break -- members are ordered by event time: the rest is later than t
    end
    if prev == nil or et > prev then
      prev = et
    end
    if dt < W30 then
      ef = tonumber(ef)
      if dt < W7 and bit.band(ef, 32) ~= 0 then
        raw[25] = raw[25] + 1
      end
      if bit.band(ef, 16) == 0 then
        amount = tonumber(amount)
        local etyp = ef % 16
        local base = -1
        if OUT[etyp] then
          base = 0
        elseif IN[etyp] then
          base = 8
        end
        if base >= 0 then
          for w = 1, 4 do
            if dt < W[w] then
              raw[base + 2 * w - 1] = raw[base + 2 * w - 1] + 1
              raw[base + 2 * w] = raw[base + 2 * w] + amount
            end
          end
          if dt < W7 and ecp ~= NONE then
            if base == 0 then
              out7[ecp] = true
              if dt < W24 then out24[ecp] = true end
            else
              in7[ecp] = true
              if dt < W24 then in24[ecp] = true end
            end
          end
        end
        if etyp == 3 and dt < W24 then
          raw[17] = raw[17] + 1
          raw[18] = raw[18] + amount
          if ebranch ~= '0' then branches[ebranch] = true end
        end
        if dt < W7 and bit.band(ef, 64) ~= 0 then
          raw[24] = raw[24] + 1
        end
      end
    end
  end
  if pmax ~= nil and pmax <= t and (prev == nil or pmax > prev) then
    prev = pmax
  end
  if typ == 3 and branch ~= 0 then
    branches[fmt(branch)] = true
  end
  raw[19] = size(branches)
  raw[20], raw[21] = size(out24), size(out7)
  raw[22], raw[23] = size(in24), size(in7)
  if prev ~= nil then
    raw[26], raw[27] = prev, 1
  end
  raw[28] = cnt
  local seen = redis.call('SMISMEMBER', skey, 'c' .. cp, 'd' .. dev)
  local cp_new = cp ~= NONE and seen[1] == 0
  local dev_unseen = dev ~= NONE and seen[2] == 0
  if cp_new then raw[29] = 1 end
  if dev_unseen and cnt > 0 then raw[30] = 1 end
  raw[31] = ewma
  if cp ~= NONE then
    raw[32] = redis.call('ZCOUNT', P .. ':of:' .. cp, '-inf', fmt(t))
    raw[33] = redis.call('ZCOUNT', P .. ':oa:' .. cp, '-inf', fmt(t))
  end
  local handle, inserted, member = -1, 0, ''
  if apply then
    handle = first_id + i
    applied = applied + 1
    if last == nil then
      new_accounts = new_accounts + 1
    end
    if last == nil or t > last - retention then
      local stored_branch = 0
      if typ == 3 then stored_branch = branch end
      member = fmt(handle) .. '|' .. fmt(t) .. '|' .. fmt(flags) .. '|' .. fmt(fen) .. '|' .. cp .. '|' .. fmt(stored_branch)
      redis.call('ZADD', ekey, fmt(t), member)
    elseif pmax == nil or t > pmax then
      pmax = t
    end
    local newlast = t
    if last ~= nil and last > t then newlast = last end
    -- events past the retention of the account's newest event can never be in a window again
    local horizon = newlast - retention
    if #events > 0 then
      local oldest = tonumber(string.match(events[1], '^%d+|(%-?%d+)|'))
      if oldest <= horizon then
        for _, m in ipairs(events) do
          local et = tonumber(string.match(m, '^%d+|(%-?%d+)|'))
          if et > horizon then break end
          if pmax == nil or et > pmax then pmax = et end
        end
        redis.call('ZREMRANGEBYSCORE', ekey, '-inf', fmt(horizon))
      end
    end
    local newewma
    if ewma == 0 then
      newewma = fen
    else
      newewma = ewma * (1.0 - weight) + fen * weight
    end
    if pmax ~= nil then
      redis.call('HSET', hkey, 'last', fmt(newlast), 'cnt', fmt(cnt + 1), 'ewma', string.format('%.17g', newewma),
        'pmax', fmt(pmax))
    else
      redis.call('HSET', hkey, 'last', fmt(newlast), 'cnt', fmt(cnt + 1), 'ewma', string.format('%.17g', newewma))
    end
    if cp_new and redis.call('SADD', skey, 'c' .. cp) == 1 then inserted = inserted + 1 end
    if dev_unseen and redis.call('SADD', skey, 'd' .. dev) == 1 then inserted = inserted + 2 end
  end
  raw[RAW_N + 1], raw[RAW_N + 2], raw[RAW_N + 3] = handle, inserted, ewma
  packed[#packed + 1] = struct.pack(ROW_FORMAT, unpack(raw))
  members[#members + 1] = member
end
if applied > 0 then
  redis.call('INCRBY', P .. ':applied', applied)
end
if new_accounts > 0 then
  redis.call('INCRBY', P .. ':accounts', new_accounts)
end
local reply = {table.concat(packed)}
for _, m in ipairs(members) do
  reply[#reply + 1] = m
end
return reply
