-- Rescue the jobs of dead workers: rq:wip:<q> members whose expiry has passed (spec §5.9,
-- made faster and gentler). Each member is removed atomically here, so two sweeping
-- workers never rescue one job twice. A job still 'started' goes back to the front of its
-- queue; one with a Retry whose retries are used up fails as rq does.
-- A member is never taken while its worker lives: when the job's worker_name is registered
-- (rq:worker:<w> has its `birth`, and no `death`) and that worker's executions set holds the
-- member, the worker was only late (an outage) and re-asserts it at its next heartbeat.
-- Also drops finished/failed registry entries whose expiry has passed, and workers whose
-- hash has expired (killed ones) from rq:workers and rq:workers:<q>.
-- ARGV: now (float), now (rq ts), base64 exc_string for failed jobs, default failure ttl,
--       max members per queue, then the queue names.
-- Returns {requeued, failed}.
local now, ts, exc = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local default_failure_ttl, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local requeued, failed = 0, 0

local function alive(worker_name, member)
  if not worker_name or worker_name == '' then return false end
  local worker_key = 'rq:worker:' .. worker_name
  return redis.call('HEXISTS', worker_key, 'birth') == 1
    and redis.call('HEXISTS', worker_key, 'death') == 0
    and redis.call('SISMEMBER', worker_key .. ':executions', member) == 1
end

local function fail(job, id, origin)
  local failure_ttl = tonumber(redis.call('HGET', job, 'failure_ttl'))
  local ttl = failure_ttl or default_failure_ttl
  redis.call('HSET', job, 'status', 'failed', 'ended_at', ts)
  for _, key in ipairs({job, job .. ':dependents', 'rq:job::' .. id .. ':dependencies'}) do
    redis.call('EXPIRE', key, ttl)
  end
  redis.call('ZADD', 'rq:failed:' .. origin, now + ttl, id)
  redis.call('XADD', 'rq:results:' .. id, 'MAXLEN', '~', '10', '*', 'type', '2',
    'worker_name', '', 'exc_string', exc)
  if failure_ttl then
    redis.call('EXPIRE', 'rq:results:' .. id, ttl)
  end
end

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
    -- <id>:<execution id>; ids may hold ':' (bad ones do), execution ids never.
    local id, exec = string.match(member, '^(.*):([^:]*)$')
    id, exec = id or member, exec or ''
    local job = 'rq:job:' .. id
    if not alive(redis.call('HGET', job, 'worker_name'), member) then
      redis.call('ZREM', wip, member)
      redis.call('DEL', 'rq:execution:' .. id .. ':' .. exec)
      redis.call('ZREM', 'rq:executions:' .. id, exec)
      if redis.call('HGET', job, 'status') == 'started' then
        local origin = redis.call('HGET', job, 'origin') or ARGV[i]
        if origin == '' then origin = ARGV[i] end
        local retries_left = tonumber(redis.call('HGET', job, 'retries_left'))
        if retries_left == nil or retries_left > 0 then
          if retries_left then
            redis.call('HSET', job, 'retries_left', retries_left - 1)
          end
          redis.call('HSET', job, 'status', 'queued', 'enqueued_at', ts)
          redis.call('LPUSH', 'rq:queue:' .. origin, id)
          requeued = requeued + 1
        else
          fail(job, id, origin)
          failed = failed + 1
        end
      end
    end
  end
end
return {requeued, failed}
