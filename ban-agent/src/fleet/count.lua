-- One host's new failures of one address in one jail, counted fleet-wide.
-- KEYS[1] failure buckets (hash: bucket number -> failures), KEYS[2] the ban, KEYS[3] the
-- stream of bans, KEYS[4] the index of bans (sorted set: ban key by end, ms). ARGV: 1 when the failures happened (ms), 2 bucket width (ms),
-- 3 findtime (ms), 4 maxretry, 5 new failures, 6 bantime (ms, 0: permanent), 7 this host,
-- 8 the address or network, 9 the jail, 10 the ban's end (ms, 0: never), 11 its signature
-- ("" without a key), 12 the ban key's value.
-- Returns {0, failures} below maxretry, {1, failures} already banned, {2, failures, id}
-- when this call created the ban (SET NX: once, whoever gets there first).
local now = tonumber(ARGV[1])
local width = tonumber(ARGV[2])
local findtime = tonumber(ARGV[3])
local maxretry = tonumber(ARGV[4])
local delta = tonumber(ARGV[5])
local bantime = tonumber(ARGV[6])
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {1, 0}
end
redis.call('HINCRBY', KEYS[1], math.floor(now / width), delta)
redis.call('PEXPIRE', KEYS[1], findtime + width)
local oldest = math.floor((now - findtime) / width)
local failures = 0
local buckets = redis.call('HGETALL', KEYS[1])
for i = 1, #buckets, 2 do
  if tonumber(buckets[i]) <= oldest then
    redis.call('HDEL', KEYS[1], buckets[i])
  else
    failures = failures + tonumber(buckets[i + 1])
  end
end
if failures < maxretry then
  return {0, failures}
end
local created
if bantime > 0 then
  created = redis.call('SET', KEYS[2], ARGV[12], 'NX', 'PX', bantime)
else
  created = redis.call('SET', KEYS[2], ARGV[12], 'NX')
end
if not created then
  return {1, failures}
end
redis.call('DEL', KEYS[1])
if bantime > 0 then
  redis.call('ZADD', KEYS[4], ARGV[10], KEYS[2])
else
  redis.call('ZADD', KEYS[4], '+inf', KEYS[2])
end
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', 100000, '*',
  'op', 'ban', 'jail', ARGV[9], 'target', ARGV[8], 'expires', ARGV[10], 'at', now,
  'host', ARGV[7], 'failures', failures, 'sig', ARGV[11])
return {2, failures, id}
