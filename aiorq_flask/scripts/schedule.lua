-- One scheduler tick (spec §5.2): take or keep each queue's scheduler lock, then move the
-- due jobs of the queues it holds onto their queues. Only the lock holder moves a queue's
-- jobs, so two schedulers never push one job twice.
-- ARGV: scheduler name, now (int epoch), now (rq ts), lock ttl, then the queue names.
-- Returns how many jobs it moved.
local name, now, ts, lock_ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local moved = 0

local function holds_lock(queue_name)
  local lock = KEY.scheduler_lock(queue_name)
  local holder = redis.call('GET', lock)
  if not holder then
    redis.call('SET', lock, name, 'EX', lock_ttl)
    return true
  elseif holder == name then
    redis.call('EXPIRE', lock, lock_ttl)
    return true
  end
  return false
end

local function move(queue_name, id)
  local job = KEY.job(id)
  redis.call('HSET', job, 'status', STATUS.QUEUED, 'enqueued_at', ts)
  if rl_hold(id, ts, now) then
    return  -- a rate-limited job waits for a slot of its limit instead
  end
  local front = redis.call('HGET', job, 'enqueue_at_front') == '1'
    or (redis.call('HGET', job, 'enqueue_at_front_on_retry') == '1'
        and (redis.call('HGET', job, 'ended_at') or '') ~= '')
  redis.call(front and 'LPUSH' or 'RPUSH', KEY.queue(queue_name), id)
end

for i = 5, #ARGV do
  if holds_lock(ARGV[i]) then
    local scheduled = KEY.scheduled(ARGV[i])
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', scheduled, 0, now, 'LIMIT', 0, 1000)) do
      if redis.call('EXISTS', KEY.job(id)) == 1 then
        move(ARGV[i], id)
        moved = moved + 1
      end
      redis.call('ZREM', scheduled, id)
    end
  end
end
return moved
