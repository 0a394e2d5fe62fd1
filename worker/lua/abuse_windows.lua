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
  for j = 0, n - 1 do
    redis.call('ZADD', key, ARGV[first + 2 * j + 1], ARGV[first + 2 * j])
  end
  for j = 0, n - 1 do
    local member, t = ARGV[first + 2 * j], tonumber(ARGV[first + 2 * j + 1])
    local rank = redis.call('ZRANK', key, member)
    out[#out + 1] = rank - redis.call('ZCOUNT', key, '-inf', string.format('%d', t - burst))
    out[#out + 1] = rank - redis.call('ZCOUNT', key, '-inf', string.format('%d', t - sustained))
  end
  -- Keep what a late, out-of-order entry could still need; older members only cost memory.
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', tonumber(newest[2]) - keep))
  redis.call('EXPIRE', key, ttl)
  i = first + 2 * n
end
return out
