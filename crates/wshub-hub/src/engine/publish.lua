-- Publishes one message to a room, atomically (docs/design/redis-engine.md).
-- KEYS[1] meta hash, KEYS[2] log stream, KEYS[3] idempotency key (the meta
-- key again when the publish has none: a script names every key it touches)
-- ARGV[1] new epoch (used if the room has none), ARGV[2] history size,
-- ARGV[3] ttl in ms, ARGV[4] frame prefix, ARGV[5] frame middle,
-- ARGV[6] channel, ARGV[7] "1" if KEYS[3] is an idempotency key.
-- Returns {epoch, offset, duplicate (0/1)}.
local epoch = room_epoch(KEYS[1], KEYS[2], ARGV[1])
local ttl = tonumber(ARGV[3])
if ARGV[7] == '1' then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    return {epoch, tonumber(seen), 1}
  end
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local frame = ARGV[4] .. offset .. ARGV[5] .. '"' .. epoch .. '","offset":' .. offset .. '}'
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], offset .. '-1', 'm', frame)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
if ARGV[7] == '1' then
  redis.call('SET', KEYS[3], offset, 'PX', ttl)
end
redis.call('SPUBLISH', ARGV[6], frame)
return {epoch, offset, 0}
