-- Prepended to publish.lua and read.lua: a room's epoch, given one if it
-- has none (a new room, or one whose meta expired or was lost). A new life
-- drops whatever is left of the old one's log (its meta evicted alone), so
-- the old offsets cannot collide with the new ones.
local function room_epoch(meta, log, new_epoch)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = new_epoch
    redis.call('DEL', log)
    redis.call('HSET', meta, 'epoch', epoch, 'offset', 0)
  end
  return epoch
end
