-- Move one dead letter back to its shard stream atomically: append its payload as a new entry
-- and delete it from the dead-letter stream, or do nothing at all.
-- KEYS[1] dead-letter stream   KEYS[2] the shard stream it came from
-- ARGV[1] dead-letter entry id   ARGV[2] that shard's number (checked against the entry)
local found = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #found == 0 then return 0 end
local fields = found[1][2]
local shard, payload = nil, nil
for i = 1, #fields, 2 do
  if fields[i] == 'shard' then shard = fields[i + 1] end
  if fields[i] == 'payload' then payload = fields[i + 1] end
end
if shard ~= ARGV[2] or not payload then return 0 end
redis.call('XADD', KEYS[2], '*', 's', payload)
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
