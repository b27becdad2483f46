-- Rescue the jobs of dead workers: every rq:wip:<q> member whose expiry has passed
-- (spec §5.9, made faster and gentler). Each member is removed atomically here, so two
-- sweeping workers never rescue one job twice. A job still 'started' goes back to the
-- front of its queue; one with a Retry whose retries are used up fails as rq does.
-- Also drops finished/failed registry entries whose expiry has passed, and workers whose
-- hash has expired (killed ones) from rq:workers and rq:workers:<q>.
-- ARGV: now (float), now (rq ts), base64 exc_string for failed jobs, default failure ttl,
--       max members per queue, then the queue names.
local now, ts, exc = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local default_failure_ttl, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local requeued, failed = 0, 0
for i = 6, #ARGV do
  local wip = 'rq:wip:' .. ARGV[i]
  redis.call('ZREMRANGEBYSCORE', 'rq:finished:' .. ARGV[i], 0, now)
  redis.call('ZREMRANGEBYSCORE', 'rq:failed:' .. ARGV[i], 0, now)
  for _, worker_key in ipairs(redis.call('SMEMBERS', 'rq:workers:' .. ARGV[i])) do
    if redis.call('EXISTS', worker_key) == 0 then
      redis.call('SREM', 'rq:workers:' .. ARGV[i], worker_key)
      redis.call('SREM', 'rq:workers', worker_key)
    end
  end
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', wip, 0, now, 'LIMIT', 0, limit)) do
    redis.call('ZREM', wip, member)
    local sep = string.find(member, ':', 1, true)
    local id = sep and string.sub(member, 1, sep - 1) or member
    local exec = sep and string.sub(member, sep + 1) or ''
    local job = 'rq:job:' .. id
    redis.call('DEL', 'rq:execution:' .. id .. ':' .. exec)
    redis.call('ZREM', 'rq:executions:' .. id, exec)
    if redis.call('HGET', job, 'status') == 'started' then
      local origin = redis.call('HGET', job, 'origin') or ARGV[i]
      local retries_left = tonumber(redis.call('HGET', job, 'retries_left'))
      if retries_left == nil or retries_left > 0 then
        if retries_left then
          redis.call('HSET', job, 'retries_left', retries_left - 1)
        end
        redis.call('HSET', job, 'status', 'queued', 'enqueued_at', ts)
        redis.call('LPUSH', 'rq:queue:' .. origin, id)
        requeued = requeued + 1
      else
        local failure_ttl_field = redis.call('HGET', job, 'failure_ttl')
        local ttl = tonumber(failure_ttl_field or default_failure_ttl)
        redis.call('HSET', job, 'status', 'failed', 'ended_at', ts)
        for _, key in ipairs({job, job .. ':dependents', 'rq:job::' .. id .. ':dependencies'}) do
          redis.call('EXPIRE', key, ttl)
        end
        redis.call('ZADD', 'rq:failed:' .. origin, now + ttl, id)
        redis.call('XADD', 'rq:results:' .. id, 'MAXLEN', '~', '10', '*', 'type', '2',
          'worker_name', '', 'exc_string', exc)
        if failure_ttl_field then
          redis.call('EXPIRE', 'rq:results:' .. id, ttl)
        end
        failed = failed + 1
      end
    end
  end
end
return {requeued, failed}
