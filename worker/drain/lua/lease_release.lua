-- Give up a drainer slot's lease, only if it still names this task.
-- KEYS[1] lease key   ARGV[1] task id
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
