-- Rate windows for one batch in one call. For every submission: add it to its (petition, hashed
-- IP) window, keyed by receipt so a redelivered entry is never added twice, then count the
-- submissions before it (by accepted-at, ties by receipt) inside each window (t - W, t].
-- A window is a sorted set (members receipts, scores accepted-at in ms), except while it holds a
-- single member: then it is a string "<ms> <receipt>" (the usual case, a signer signing once;
-- one SET instead of three sorted-set calls), turned into a sorted set when a second one comes.
-- Each petition keeps an index of its windows (`<...>abuse:<petition>:recent`, members the window
-- keys, scores the newest accepted-at in ms of the last batch that used them). Past `cap` windows
-- the least recently used go, index member and window both: addresses made up by the thousand
-- cannot grow Redis without bound, and a window dropped is one whose IP signed least recently,
-- which no longer counts once older than the sustained window. One score per batch, and keys that
-- arrive as KEYS, so the index costs no string built here (strings made in Lua are costly).
-- KEYS: one window per (petition, hashed IP): first the S windows that get one member each in
--   this batch, then the others (W in all), each group in petition order; then the P petitions'
--   indexes, in that order
-- ARGV[1] burst window ms   ARGV[2] sustained window ms   ARGV[3] key TTL in seconds
-- ARGV[4] cap: windows kept per petition   ARGV[5] W   ARGV[6] the batch's newest accepted-at ms
-- ARGV[7] P, then per petition: its number of one-member windows, its number of others
-- then S, then one "<ms> <receipt>" for each of the first S keys, then for each other key:
--   n, followed by n pairs (receipt, accepted-at ms)
-- Returns, for each submission with anything before it in a window, flat: its position (1-based,
-- in ARGV order), its count in the burst window, its count in the sustained window. Submissions
-- not listed have no earlier signature in either window.
local burst, sustained, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cap, windows = tonumber(ARGV[4]), tonumber(ARGV[5])
local used_at = ARGV[6]  -- kept a string: a number would be turned into one for every ZADD pair
local petitions = tonumber(ARGV[7])
local base = 7 + 2 * petitions  -- ARGV[base + 1] is S
local keep = 2 * math.max(burst, sustained)
local out = {}
local position = 0

-- Record the petition's windows KEYS[first + 1 .. first + n] as used at `stamp` in `index`.
local function index_windows(index, first, n, stamp)
  local args = {}
  for k = first + 1, first + n do
    args[#args + 1] = stamp
    args[#args + 1] = KEYS[k]
    if #args >= 1000 or k == first + n then  -- unpack() is bounded by Lua's stack
      redis.call('ZADD', index, 'GT', unpack(args))
      args = {}
    end
  end
end

-- Drop the least recently used windows of `index` past `cap`.
local function bound(index)
  local excess = redis.call('ZCARD', index) - cap
  if excess > 0 then
    local gone = redis.call('ZPOPMIN', index, excess)
    for j = 1, #gone, 2 do
      redis.call('DEL', gone[j])
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
  position = position + n
end

local singles = tonumber(ARGV[base + 1])
for k = 1, singles do
  -- A new window: this member alone, nothing before it. Else count it with the others.
  if redis.call('SET', KEYS[k], ARGV[base + 1 + k], 'EX', ttl, 'NX') then
    position = position + 1
  else
    add_and_count(KEYS[k], {split(ARGV[base + 1 + k])})
  end
end
local i = base + 2 + singles
for k = singles + 1, windows do
  local n = tonumber(ARGV[i])
  local members = {}
  for j = 1, n do
    members[j] = {tonumber(ARGV[i + 2 * j]), ARGV[i + 2 * j - 1]}
  end
  add_and_count(KEYS[k], members)
  i = i + 1 + 2 * n
end
local at_single, at_other = 0, singles
for p = 1, petitions do
  local index = KEYS[windows + p]
  local ones, more = tonumber(ARGV[6 + 2 * p]), tonumber(ARGV[7 + 2 * p])
  index_windows(index, at_single, ones, used_at)
  index_windows(index, at_other, more, used_at)
  at_single, at_other = at_single + ones, at_other + more
  bound(index)
end
return out
