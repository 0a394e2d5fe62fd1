-- Rate windows for one batch in one call. For every submission: add it to its (petition, hashed
-- IP) window, keyed by receipt so a redelivered entry is never added twice, then count the
-- submissions before it (by accepted-at, ties by receipt) inside each window (t - W, t].
-- A window is a sorted set (members receipts, scores accepted-at in ms), except while it holds a
-- single member: then it is a string "<ms> <receipt>" (the usual case, a signer signing once;
-- one SET instead of three sorted-set calls), turned into a sorted set when a second one comes.
-- KEYS: one window per (petition, hashed IP): first the S windows that get one member each in
--   this batch, then the others
-- ARGV[1] burst window ms   ARGV[2] sustained window ms   ARGV[3] key TTL in seconds
-- ARGV[4] S, then S pairs (receipt, accepted-at ms) for the first S keys, then for each other
--   key: n, followed by n pairs (receipt, accepted-at ms)
-- Returns, for each submission with anything before it in a window, flat: its position (1-based,
-- in ARGV order), its count in the burst window, its count in the sustained window. Submissions
-- not listed have no earlier signature in either window.
local burst, sustained, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local keep = 2 * math.max(burst, sustained)
local out = {}
local position = 0

-- A window stored as a string becomes the sorted set of its one member.
local function as_sorted_set(key)
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'string' then
    local value = redis.call('GET', key)
    local sep = string.find(value, ' ', 1, true)
    redis.call('DEL', key)
    redis.call('ZADD', key, string.sub(value, 1, sep - 1), string.sub(value, sep + 1))
  end
end

-- Add members ARGV[first], ARGV[first + 1] ... (n pairs) to the window `key` and count.
local function add_and_count(key, first, n)
  as_sorted_set(key)
  local newest = 0
  local pairs = {}
  for j = 0, n - 1 do
    local t = tonumber(ARGV[first + 2 * j + 1])
    if t > newest then newest = t end
    pairs[#pairs + 1] = ARGV[first + 2 * j + 1]
    pairs[#pairs + 1] = ARGV[first + 2 * j]
    if #pairs >= 1000 or j == n - 1 then  -- unpack() is bounded by Lua's stack
      redis.call('ZADD', key, unpack(pairs))
      pairs = {}
    end
  end
  if n <= 16 and redis.call('ZCARD', key) == n then
    -- A window holding only this batch's few members: count among them here instead of three
    -- calls per member.
    local times = {}
    for j = 0, n - 1 do times[j + 1] = {tonumber(ARGV[first + 2 * j + 1]), ARGV[first + 2 * j]} end
    for j = 1, n do
      local t, member = times[j][1], times[j][2]
      local b, s = 0, 0
      for m = 1, n do
        local u, other = times[m][1], times[m][2]
        if u < t or (u == t and other < member) then
          if u > t - burst then b = b + 1 end
          if u > t - sustained then s = s + 1 end
        end
      end
      if b + s > 0 then
        out[#out + 1] = position + j
        out[#out + 1] = b
        out[#out + 1] = s
      end
    end
  else
    for j = 0, n - 1 do
      local member, t = ARGV[first + 2 * j], tonumber(ARGV[first + 2 * j + 1])
      local rank = redis.call('ZRANK', key, member)
      local b = rank - redis.call('ZCOUNT', key, '-inf', string.format('%d', t - burst))
      local s = rank - redis.call('ZCOUNT', key, '-inf', string.format('%d', t - sustained))
      if b + s > 0 then
        out[#out + 1] = position + j + 1
        out[#out + 1] = b
        out[#out + 1] = s
      end
    end
    -- Keep what a late, out-of-order entry could still need; older members only cost memory.
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', newest - keep))
  end
  redis.call('EXPIRE', key, ttl)
  position = position + n
end

local singles = tonumber(ARGV[4])
local i = 5
for k = 1, singles do
  local key, member, t = KEYS[k], ARGV[i], ARGV[i + 1]
  -- A new window: this member alone, nothing before it.
  if redis.call('SET', key, t .. ' ' .. member, 'EX', ttl, 'NX') then
    position = position + 1
  else
    add_and_count(key, i, 1)
  end
  i = i + 2
end
for k = singles + 1, #KEYS do
  local n = tonumber(ARGV[i])
  add_and_count(KEYS[k], i + 1, n)
  i = i + 1 + 2 * n
end
return out
