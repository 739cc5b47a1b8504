-- Who is in a room, whichever node they are on (docs/design/redis-engine.md,
-- "Presence"). An entry per member: its field is "<node>:<connection id>",
-- its value the display name, and its expiry (server time, ms) in a sorted
-- set; its node renews it every ttl/3, so a node that died stops renewing
-- and its entries go at the next call on the room after the ttl.
-- KEYS[1] presence hash (field -> name), KEYS[2] names hash (unique name ->
-- field), KEYS[3] expiry sorted set (field -> ms)
-- ARGV[1] op: 'join', 'leave', 'refresh' or 'list'; ARGV[2] ttl in ms;
-- ARGV[3] the room's shard channel; the op's own arguments from ARGV[4]:
--   join:    field, name, unique ('1'/'0'), presence limit, notice ('' none)
--   leave:   field, presence limit, notice ('' none)
--   refresh: field, name, unique, field, name, unique, ...
--   list:    nothing
-- Returns {status, member count, {name, ...}, {expired name, ...}}, the
-- names listed (join, list: up to 100) or put back (refresh):
-- status 0 = name taken on this node (nothing changed but the expiry), 1 = done,
-- 2 = a new entry (join) or an entry removed (leave). The expired names are
-- the members of dead nodes removed now: the caller announces them.
local presence, names, expiry = KEYS[1], KEYS[2], KEYS[3]
local op, ttl, channel = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Removes `field`'s entry; returns its name, or false.
local function remove(field)
  local name = redis.call('HGET', presence, field)
  redis.call('HDEL', presence, field)
  redis.call('ZREM', expiry, field)
  if name and redis.call('HGET', names, name) == field then
    redis.call('HDEL', names, name)
  end
  return name
end

-- Removes the entries their nodes stopped renewing; returns their names.
local function expire()
  local expired = {}
  for _, field in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', now)) do
    local name = remove(field)
    if name then
      expired[#expired + 1] = name
    end
  end
  return expired
end

-- The keys outlive the last renewal by the ttl, then go by themselves.
local function keep()
  redis.call('PEXPIRE', presence, ttl)
  redis.call('PEXPIRE', names, ttl)
  redis.call('PEXPIRE', expiry, ttl)
end

-- Up to 100 names (a random sample of a bigger room).
local function listing()
  local count = redis.call('HLEN', presence)
  if count <= 100 then
    return count, redis.call('HVALS', presence)
  end
  local pairs = redis.call('HRANDFIELD', presence, 100, 'WITHVALUES')
  local listed = {}
  for i = 2, #pairs, 2 do
    listed[#listed + 1] = pairs[i]
  end
  return count, listed
end

local expired = expire()
if op == 'join' then
  local field, name, unique = ARGV[4], ARGV[5], ARGV[6] == '1'
  local limit, notice = tonumber(ARGV[7]), ARGV[8]
  if unique then
    local holder = redis.call('HGET', names, name)
    if holder and holder ~= field then
      -- Held on this node: taken. Held on another node: this join takes
      -- it over (a client whose node died rejoins elsewhere at once, not a
      -- presence ttl later); the old entry goes, without a leave notice,
      -- since the name stays in the room.
      if string.match(holder, '^[^:]*') == string.match(field, '^[^:]*') then
        return {0, redis.call('HLEN', presence), {}, expired}
      end
      remove(holder)
    end
  end
  local old = redis.call('HGET', presence, field)
  if old and old ~= name and redis.call('HGET', names, old) == field then
    redis.call('HDEL', names, old)
  end
  redis.call('HSET', presence, field, name)
  if unique then
    redis.call('HSET', names, name, field)
  end
  redis.call('ZADD', expiry, now + ttl, field)
  keep()
  local count, listed = listing()
  if not old and count <= limit and notice ~= '' then
    redis.call('SPUBLISH', channel, notice)
  end
  return {old and 1 or 2, count, listed, expired}
elseif op == 'leave' then
  local field, limit, notice = ARGV[4], tonumber(ARGV[5]), ARGV[6]
  local name = remove(field)
  local count = redis.call('HLEN', presence)
  if name and count < limit and notice ~= '' then
    redis.call('SPUBLISH', channel, notice)
  end
  return {name and 2 or 1, count, {}, expired}
elseif op == 'refresh' then
  local back = {}
  for i = 4, #ARGV - 2, 3 do
    local field, name, unique = ARGV[i], ARGV[i + 1], ARGV[i + 2] == '1'
    -- Put back too, after Redis lost the keys (restarted empty) or they
    -- expired while the node could not reach Redis.
    if redis.call('HSET', presence, field, name) == 1 then
      back[#back + 1] = name
    end
    if unique and not redis.call('HGET', names, name) then
      redis.call('HSET', names, name, field)
    end
    redis.call('ZADD', expiry, now + ttl, field)
  end
  keep()
  return {1, redis.call('HLEN', presence), back, expired}
elseif op == 'list' then
  local count, listed = listing()
  return {1, count, listed, expired}
end
return redis.error_reply('unknown presence op ' .. op)
