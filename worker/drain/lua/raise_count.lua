-- Publish a petition's committed count to the live registry, never moving it backwards:
-- two workers may finish batches for the same petition in either order.
-- KEYS[1] petition hash   ARGV[1] committed signature_count
local current = tonumber(redis.call('HGET', KEYS[1], 'count') or '-1')
if tonumber(ARGV[1]) > current then
  redis.call('HSET', KEYS[1], 'count', ARGV[1])
  return 1
end
return 0
