-- A ban decided by one host (from its log, or by its operator), or an operator's unban,
-- published to the fleet.
-- KEYS[1] the ban, KEYS[2] the stream of bans, KEYS[3] the failure buckets, KEYS[4] the
-- index of bans (sorted set: ban key by end, ms).
-- ARGV: 1 "ban" or "unban", 2 "1" to replace a ban in force (an operator's) else "0",
-- 3 the ban's length (ms, 0: permanent), 4 the ban key's value, 5 the jail, 6 the address
-- or network, 7 the ban's end (ms, 0: never), 8 when (ms), 9 this host, 10 failures,
-- 11 the signature ("" without a key).
-- Returns {1} when a ban was in force already (nothing appended), {2, id} when appended.
if ARGV[1] == 'ban' then
  local created
  local px = tonumber(ARGV[3])
  if ARGV[2] == '1' then
    if px > 0 then
      created = redis.call('SET', KEYS[1], ARGV[4], 'PX', px)
    else
      created = redis.call('SET', KEYS[1], ARGV[4])
    end
  elseif px > 0 then
    created = redis.call('SET', KEYS[1], ARGV[4], 'NX', 'PX', px)
  else
    created = redis.call('SET', KEYS[1], ARGV[4], 'NX')
  end
  if not created then
    return {1}
  end
  if px > 0 then
    redis.call('ZADD', KEYS[4], ARGV[7], KEYS[1])
  else
    redis.call('ZADD', KEYS[4], '+inf', KEYS[1])
  end
else
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[4], KEYS[1])
end
redis.call('DEL', KEYS[3])
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*',
  'op', ARGV[1], 'jail', ARGV[5], 'target', ARGV[6], 'expires', ARGV[7], 'at', ARGV[8],
  'host', ARGV[9], 'failures', ARGV[10], 'sig', ARGV[11])
return {2, id}
