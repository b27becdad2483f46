-- A periodic job's tick (aiorq_flask/cron.py), compared and set in the same atomic step
-- as its enqueue: loaded before enqueue.lua's body, it lets the job be written only if
-- this tick is newer than the last one enqueued under its name, so however many workers
-- try, each tick is enqueued once. A name seen for the first time records its tick and
-- enqueues nothing: its first run is its next tick.
-- Takes its own arguments off before enqueue.lua reads its: the last key, the name's
-- state hash (rq:cron:<name>), and the first argument, the tick (epoch seconds).
-- Returns nil, writing nothing else, when the tick is not new.
local function cron_tick_is_new()
  local state, tick = table.remove(KEYS), tonumber(table.remove(ARGV, 1))
  local last = tonumber(redis.call('HGET', state, 'tick'))
  if last and last >= tick then
    return false
  end
  redis.call('HSET', state, 'tick', tick)
  if last then
    redis.call('HSET', state, 'job_id', ARGV[1])
  end
  return last ~= nil
end

if not cron_tick_is_new() then
  return nil
end
