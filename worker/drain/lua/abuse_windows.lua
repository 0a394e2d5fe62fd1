-- Rate windows for one batch in one call. For every submission: add it to its (petition, hashed
-- IP) window, keyed by receipt so a redelivered entry is never added twice, then count the
-- submissions before it (by accepted-at, ties by receipt) inside each window (t - W, t].
-- A window is a sorted set (members receipts, scores accepted-at in ms), except while it holds a
-- single member: then it is a string "<ms> <receipt>" (the usual case, a signer signing once;
-- one SET instead of three sorted-set calls), turned into a sorted set when a second one comes.
-- Each petition keeps an index of its windows (`<...>abuse:<petition>:recent`, members the IP
-- hashes, scores their latest accepted-at in ms). Past `cap` windows the least recently used go,
-- index member and window both: addresses made up by the thousand cannot grow Redis without
-- bound, and a window dropped is one whose IP signed least recently, which no longer counts once
-- older than the sustained window.
-- KEYS: one window per (petition, hashed IP): first the S windows that get one member each in
--   this batch, then the others (W in all); then the index of each petition the windows belong to
-- ARGV[1] burst window ms   ARGV[2] sustained window ms   ARGV[3] key TTL in seconds
-- ARGV[4] cap: windows kept per petition   ARGV[5] W
-- ARGV[6] S, then one "<ms> <receipt>" for each of the first S keys, then for each other key:
--   n, followed by n pairs (receipt, accepted-at ms)
-- Returns, for each submission with anything before it in a window, flat: its position (1-based,
-- in ARGV order), its count in the burst window, its count in the sustained window. Submissions
-- not listed have no earlier signature in either window.
local burst, sustained, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cap, windows = tonumber(ARGV[4]), tonumber(ARGV[5])
local keep = 2 * math.max(burst, sustained)
local out = {}
local position = 0
local used = {}  -- index key -> {ms, IP hash, ms, IP hash, ...}: the windows this batch used

-- Note that the window `key` was used at `ms`, for its petition's index.
local function note(key, ms)
  local sep = string.match(key, '^.*():')
  local index = string.sub(key, 1, sep) .. 'recent'
  local list = used[index]
  if not list then
    list = {}
    used[index] = list
  end
  list[#list + 1] = ms
  list[#list + 1] = string.sub(key, sep + 1)
end

-- Record the windows used in `index`, then drop the least recently used past `cap`.
local function bound(index)
  local list = used[index]
  if not list then return end
  for j = 1, #list, 1000 do  -- unpack() is bounded by Lua's stack
    redis.call('ZADD', index, 'GT', unpack(list, j, math.min(j + 999, #list)))
  end
  local excess = redis.call('ZCARD', index) - cap
  if excess > 0 then
    local base = string.sub(index, 1, #index - #'recent')
    local gone = redis.call('ZPOPMIN', index, excess)
    for j = 1, #gone, 2 do
      redis.call('DEL', base .. gone[j])
    end
  end
  redis.call('EXPIRE', index, ttl)
end

-- "<ms> <receipt>" as {ms, receipt}
local function split(value)
  local sep = string.find(value, ' ', 1, true)
  return {tonumber(string.sub(value, 1, sep - 1)), string.sub(value, sep + 1)}
end

-- A window stored as a string becomes the sorted set of its one member.
local function as_sorted_set(key)
  if redis.call('TYPE', key)['ok'] == 'string' then
    local member = split(redis.call('GET', key))
    redis.call('DEL', key)
    redis.call('ZADD', key, member[1], member[2])
  end
end

-- Add `members` ({ms, receipt} each) to the window `key`, count, and note the counts.
local function add_and_count(key, members)
  as_sorted_set(key)
  local n = #members
  local newest = 0
  local pairs = {}
  for j = 1, n do
    local t = members[j][1]
    if t > newest then newest = t end
    pairs[#pairs + 1] = t
    pairs[#pairs + 1] = members[j][2]
    if #pairs >= 1000 or j == n then  -- unpack() is bounded by Lua's stack
      redis.call('ZADD', key, unpack(pairs))
      pairs = {}
    end
  end
  if n <= 16 and redis.call('ZCARD', key) == n then
    -- A window holding only this batch's few members: count among them here instead of three
    -- calls per member.
    for j = 1, n do
      local t, member = members[j][1], members[j][2]
      local b, s = 0, 0
      for m = 1, n do
        local u, other = members[m][1], members[m][2]
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
    for j = 1, n do
      local t, member = members[j][1], members[j][2]
      local rank = redis.call('ZRANK', key, member)
      local b = rank - redis.call('ZCOUNT', key, '-inf', string.format('%d', t - burst))
      local s = rank - redis.call('ZCOUNT', key, '-inf', string.format('%d', t - sustained))
      if b + s > 0 then
        out[#out + 1] = position + j
        out[#out + 1] = b
        out[#out + 1] = s
      end
    end
    -- Keep what a late, out-of-order entry could still need; older members only cost memory.
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', newest - keep))
  end
  redis.call('EXPIRE', key, ttl)
  note(key, newest)
  position = position + n
end

local singles = tonumber(ARGV[6])
for k = 1, singles do
  -- A new window: this member alone, nothing before it. Else count it with the others.
  local value = ARGV[6 + k]
  if redis.call('SET', KEYS[k], value, 'EX', ttl, 'NX') then
    note(KEYS[k], tonumber(string.sub(value, 1, string.find(value, ' ', 1, true) - 1)))
    position = position + 1
  else
    add_and_count(KEYS[k], {split(value)})
  end
end
local i = 7 + singles
for k = singles + 1, windows do
  local n = tonumber(ARGV[i])
  local members = {}
  for j = 1, n do
    members[j] = {tonumber(ARGV[i + 2 * j]), ARGV[i + 2 * j - 1]}
  end
  add_and_count(KEYS[k], members)
  i = i + 1 + 2 * n
end
for k = windows + 1, #KEYS do
  bound(KEYS[k])
end
return out
