-- Accept one submission atomically: check the petition registry, the idempotency key and the
-- backlog, then append to the shard's stream. One round trip per submission.
-- KEYS[1] petition hash   KEYS[2] shard stream   KEYS[3] idempotency key (or the stream again)
-- KEYS[4] running totals hash (`accepted` is counted here, for `sigingest stats`)
-- ARGV[1] entry payload   ARGV[2] receipt   ARGV[3] idempotency TTL seconds
-- ARGV[4] per-shard backlog limit (0 = off)   ARGV[5] "1" when an idempotency key was given
-- ARGV[6] the request's fingerprint (hex): the key's value is "<receipt> <fingerprint>"
-- KEYS[5], KEYS[6] keys remembered in this TTL period and the one before (cap on live keys)
-- ARGV[7] most keys per TTL period (0 = no cap): past it the signature is still queued, its
--   key is just not remembered, so client-chosen keys cannot fill Redis
-- Replies {'ok', receipt, confirm}: confirm is the petition's email-confirmation mode ('1' or '0').
local status, confirm = unpack(redis.call('HMGET', KEYS[1], 'status', 'confirm'))
if not status then return {'unknown'} end
if status ~= 'open' then return {'closed'} end
confirm = confirm or '0'
if ARGV[5] == '1' then
  local prior = redis.call('GET', KEYS[3])
  if prior then
    local receipt, fingerprint = string.match(prior, '^(%S+) (%S+)$')
    -- A key that answered another request never answers this one: that would drop a signature.
    if fingerprint and fingerprint ~= ARGV[6] then return {'reused'} end
    return {'ok', receipt or prior, confirm}
  end
end
local limit = tonumber(ARGV[4])
if limit > 0 and redis.call('XLEN', KEYS[2]) >= limit then return {'full'} end
redis.call('XADD', KEYS[2], '*', 's', ARGV[1])
redis.call('HINCRBY', KEYS[4], 'accepted', 1)
if ARGV[5] == '1' then
  local cap = tonumber(ARGV[7])
  local live = tonumber(redis.call('GET', KEYS[5]) or '0') + tonumber(redis.call('GET', KEYS[6]) or '0')
  if cap == 0 or live < cap then
    redis.call('SET', KEYS[3], ARGV[2] .. ' ' .. ARGV[6], 'EX', ARGV[3])
    if cap > 0 and redis.call('INCR', KEYS[5]) == 1 then redis.call('EXPIRE', KEYS[5], 2 * ARGV[3]) end
  end
end
return {'ok', ARGV[2], confirm}
