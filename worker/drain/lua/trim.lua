-- Delete acknowledged entries from one shard stream, never unacknowledged ones.
-- Everything older than the group's oldest pending entry (or, with nothing pending, up to and
-- including its last delivered entry) has been delivered and acknowledged. The last delivered
-- entry goes too: left in place it would count against the intake's backlog limit forever.
-- KEYS[1] shard stream   ARGV[1] consumer group
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local summary = redis.call('XPENDING', KEYS[1], ARGV[1])
local minid = nil
if tonumber(summary[1]) > 0 then
  minid = summary[2]
else
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local name, last = nil, nil
    for i = 1, #group, 2 do
      if group[i] == 'name' then name = group[i + 1] end
      if group[i] == 'last-delivered-id' then last = group[i + 1] end
    end
    if name == ARGV[1] then minid = last end
  end
end
if not minid or minid == '0-0' then return 0 end
if tonumber(summary[1]) == 0 then
  local ms, seq = string.match(minid, '^(%d+)-(%d+)$')
  minid = string.format('%s-%d', ms, tonumber(seq) + 1)
end
return redis.call('XTRIM', KEYS[1], 'MINID', minid)
