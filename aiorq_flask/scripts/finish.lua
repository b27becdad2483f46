-- Record how one execution ended, in one atomic step (spec §5.6, §5.7, §5.8, §5.11, §5.3).
-- ARGV: job id, execution id, worker name ('' in eager mode), outcome, now (float), now (rq ts),
--       payload (success: base64 return value or ''; failure/stopped: base64 exc_string),
--       execution started at (float), working seconds, default result ttl, default failure ttl
-- outcome: 'finished' | 'failed' | 'stopped' | 'requeue' (worker shutdown: back to the front)
-- Returns the outcome actually written: a failed job with retries left is 'retried' or
-- 'scheduled'; 'gone' when the job hash no longer exists.
local id, exec, worker, outcome = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, ts, payload = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local started, working = ARGV[8], ARGV[9]
local job = 'rq:job:' .. id
local results = 'rq:results:' .. id
local dependents = 'rq:job:' .. id .. ':dependents'
local dependencies = 'rq:job::' .. id .. ':dependencies'
local worker_key = 'rq:worker:' .. worker
local member = id .. ':' .. exec

local origin = redis.call('HGET', job, 'origin')
redis.call('DEL', 'rq:execution:' .. id .. ':' .. exec)
redis.call('ZREM', 'rq:executions:' .. id, exec)
if worker ~= '' then
  redis.call('SREM', worker_key .. ':executions', member)
  if redis.call('HGET', worker_key, 'current_job') == id then
    redis.call('HDEL', worker_key, 'current_job')
  end
end
if not origin then
  return 'gone'
end
local was_booked = redis.call('ZREM', 'rq:wip:' .. origin, member) == 1
local queue = 'rq:queue:' .. origin
if not was_booked and redis.call('HGET', job, 'status') == 'queued' then
  -- a sweep took this run for abandoned and requeued it: this run's outcome stands
  redis.call('LREM', queue, 1, id)
end

local function expire_job(ttl)
  for _, key in ipairs({job, dependents, dependencies}) do
    redis.call('EXPIRE', key, ttl)
  end
end

local function release_dependents(parent_failed)
  for _, dep in ipairs(redis.call('SMEMBERS', dependents)) do
    local dep_key = 'rq:job:' .. dep
    local allow = redis.call('HGET', dep_key, 'allow_dependency_failures') == '1'
    if redis.call('HGET', dep_key, 'status') == 'deferred' and (allow or not parent_failed) then
      local ready = true
      for _, other in ipairs(redis.call('SMEMBERS', 'rq:job::' .. dep .. ':dependencies')) do
        local status = redis.call('HGET', 'rq:job:' .. other, 'status')
        if other ~= id and status and status ~= 'finished' and not (allow and status == 'failed') then
          ready = false
        end
      end
      if ready then
        local dep_origin = redis.call('HGET', dep_key, 'origin')
        redis.call('ZREM', 'rq:deferred:' .. dep_origin, dep)
        redis.call('HSET', dep_key, 'status', 'queued', 'enqueued_at', ts)
        if redis.call('HGET', dep_key, 'enqueue_at_front') == '1' then
          redis.call('LPUSH', 'rq:queue:' .. dep_origin, dep)
        else
          redis.call('RPUSH', 'rq:queue:' .. dep_origin, dep)
        end
        redis.call('SREM', dependents, dep)
      end
    end
  end
end

local function count(field)
  if worker ~= '' then  -- '' is eager mode: no worker hash to count in
    redis.call('HINCRBY', worker_key, field, 1)
    redis.call('HINCRBYFLOAT', worker_key, 'total_working_time', working)
  end
end

if outcome == 'requeue' then
  redis.call('HSET', job, 'status', 'queued', 'enqueued_at', ts)
  redis.call('LPUSH', queue, id)
  return 'requeue'
end

if outcome == 'finished' then
  count('successful_job_count')
  local ttl = tonumber(redis.call('HGET', job, 'result_ttl') or ARGV[10])
  release_dependents(false)
  if ttl == 0 then
    redis.call('DEL', job, dependents, dependencies, results)
    return 'finished'
  end
  redis.call('HSET', job, 'status', 'finished', 'ended_at', ts, 'last_heartbeat', ts)
  local entry = {'type', '1', 'worker_name', worker}
  if payload ~= '' then
    entry[#entry + 1] = 'return_value'
    entry[#entry + 1] = payload
  end
  for _, v in ipairs({'execution_id', exec, 'execution_started_at', started,
                      'execution_ended_at', ARGV[5]}) do
    entry[#entry + 1] = v
  end
  redis.call('XADD', results, 'MAXLEN', '~', '10', '*', unpack(entry))
  if ttl > 0 then
    redis.call('EXPIRE', results, ttl)
    redis.call('ZADD', 'rq:finished:' .. origin, now + ttl, id)
    expire_job(ttl)
  else
    redis.call('PERSIST', results)
    redis.call('ZADD', 'rq:finished:' .. origin, '+inf', id)
  end
  return 'finished'
end

-- failed or stopped
count('failed_job_count')
local retries_left = tonumber(redis.call('HGET', job, 'retries_left'))
if outcome == 'failed' and retries_left and retries_left > 0 then
  local intervals = cjson.decode(redis.call('HGET', job, 'retry_intervals') or '[]')
  local interval = intervals[math.max(#intervals - retries_left, 0) + 1] or 0
  redis.call('HSET', job, 'retries_left', retries_left - 1, 'ended_at', ts)
  if interval <= 0 then
    redis.call('HSET', job, 'status', 'queued', 'enqueued_at', ts)
    if redis.call('HGET', job, 'enqueue_at_front_on_retry') == '1' then
      redis.call('LPUSH', queue, id)
    else
      redis.call('RPUSH', queue, id)
    end
    return 'retried'
  end
  redis.call('SADD', 'rq:queues', queue)
  redis.call('HSET', job, 'status', 'scheduled')
  redis.call('ZADD', 'rq:scheduled:' .. origin, math.floor(now) + interval, id)
  return 'scheduled'
end

local failure_ttl_field = redis.call('HGET', job, 'failure_ttl')
local ttl = tonumber(failure_ttl_field or ARGV[11])
redis.call('HSET', job, 'status', outcome, 'ended_at', ts, 'last_heartbeat', ts)
expire_job(ttl)
redis.call('ZADD', 'rq:failed:' .. origin, now + ttl, id)
redis.call('XADD', results, 'MAXLEN', '~', '10', '*', 'type', '2', 'worker_name', worker,
  'exc_string', payload, 'execution_id', exec, 'execution_started_at', started,
  'execution_ended_at', ARGV[5])
if failure_ttl_field then
  redis.call('EXPIRE', results, ttl)
end
if outcome == 'failed' then
  release_dependents(true)
end
return outcome
