-- Extend a drainer slot's lease only while it still names this task.
-- KEYS[1] lease key   ARGV[1] task id   ARGV[2] TTL in milliseconds
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
