-- Rate windows for one batch in one call. For every submission: add it to its (petition, hashed
-- IP) sorted set, keyed by receipt so a redelivered entry is never added twice, then count the
-- submissions before it (by accepted-at, ties by receipt) inside each window (t - W, t].
-- KEYS: one sorted set per (petition, hashed IP); members receipts, scores accepted-at in ms
-- ARGV[1] burst window ms   ARGV[2] sustained window ms   ARGV[3] key TTL in seconds
-- then, for each key in order: n, followed by n pairs (receipt, accepted-at ms)
-- Returns, per submission in ARGV order: count in the burst window, count in the sustained window
local burst, sustained, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local keep = 2 * math.max(burst, sustained)
local out = {}
local i = 4
for k = 1, #KEYS do
  local key = KEYS[k]
  local n = tonumber(ARGV[i])
  local first = i + 1
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
    -- A window holding only this batch's few members (the usual case: many people, one or two
    -- signatures each): count among them here instead of three calls per member.
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
      out[#out + 1] = b
      out[#out + 1] = s
    end
  else
    for j = 0, n - 1 do
      local member, t = ARGV[first + 2 * j], tonumber(ARGV[first + 2 * j + 1])
      local rank = redis.call('ZRANK', key, member)
      out[#out + 1] = rank - redis.call('ZCOUNT', key, '-inf', string.format('%d', t - burst))
      out[#out + 1] = rank - redis.call('ZCOUNT', key, '-inf', string.format('%d', t - sustained))
    end
    -- Keep what a late, out-of-order entry could still need; older members only cost memory.
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', newest - keep))
  end
  redis.call('EXPIRE', key, ttl)
  i = first + 2 * n
end
return out
