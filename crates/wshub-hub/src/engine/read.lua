-- A room's epoch and last offset, giving it an epoch if it has none, and
-- optionally its messages after an offset (docs/design/redis-engine.md).
-- KEYS[1] meta hash, KEYS[2] log stream
-- ARGV[1] new epoch (used if the room has none), ARGV[2] ttl in ms,
-- ARGV[3] first offset to read ("" reads none), ARGV[4] most entries.
-- Returns {epoch, offset, {frame, ...}} with the frames of offsets
-- ARGV[3], ARGV[3]+1, ... as far as the stream has them, in order.
local epoch = room_epoch(KEYS[1], KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
local offset = tonumber(redis.call('HGET', KEYS[1], 'offset'))
local frames = {}
if ARGV[3] ~= '' then
  local entries = redis.call('XRANGE', KEYS[2], ARGV[3] .. '-0', '+', 'COUNT', ARGV[4])
  for i, entry in ipairs(entries) do
    -- entry = {id, {field, value}}; the id's first part is the offset.
    frames[i] = entry[2][2]
  end
  -- The first entry's offset, so the caller can tell a trimmed stream.
  if #entries > 0 then
    local first = string.match(entries[1][1], '^(%d+)')
    return {epoch, offset, frames, tonumber(first)}
  end
end
return {epoch, offset, frames, 0}
