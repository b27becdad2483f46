-- rq's Repeat (rq/repeat.py), after a success: with repeats left, the job runs again, at
-- once or after the next interval (used from the front; the last one for every further
-- run), and is kept until its last run. Loaded after lib/outcomes.lua, whose helpers it
-- uses. Returns whether it repeats.
local function record_repeat(C, id, origin)
  local job = KEY.job(id)
  local left = tonumber(redis.call('HGET', job, 'repeats_left'))
  if not left or left <= 0 then
    return false
  end
  local ok, intervals = pcall(cjson.decode, redis.call('HGET', job, 'repeat_intervals') or '[]')
  if not ok or type(intervals) ~= 'table' then intervals = {} end
  local interval = number(intervals[1], 0)
  if #intervals > 1 then
    table.remove(intervals, 1)
    redis.call('HSET', job, 'repeat_intervals', cjson.encode(intervals))
  end
  redis.call('HSET', job, 'repeats_left', left - 1)
  expire_job(id, -1)
  if interval <= 0 then
    redis.call('HSET', job, 'status', STATUS.QUEUED, 'enqueued_at', C.ts)
    push(origin, id, false)
  else
    redis.call('SADD', KEY.queues, KEY.queue(origin))
    redis.call('HSET', job, 'status', STATUS.SCHEDULED)
    redis.call('ZADD', KEY.scheduled(origin), math.floor(C.now) + interval, id)
  end
  return true
end
