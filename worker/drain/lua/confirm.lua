-- Queue one confirmation (a signer followed the emailed link; the intake checked its MAC).
-- One round trip, like signing: the petition must be known, the backlog not full.
-- KEYS[1] petition hash   KEYS[2] shard stream   KEYS[3] running totals hash
-- ARGV[1] entry payload   ARGV[2] per-shard backlog limit (0 = off)
if redis.call('HEXISTS', KEYS[1], 'status') == 0 then return 'unknown' end
local limit = tonumber(ARGV[2])
if limit > 0 and redis.call('XLEN', KEYS[2]) >= limit then return 'full' end
redis.call('XADD', KEYS[2], '*', 's', ARGV[1])
redis.call('HINCRBY', KEYS[3], 'confirm_clicks', 1)
return 'ok'
