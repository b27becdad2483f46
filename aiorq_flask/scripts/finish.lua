-- Record how executions ended (spec §5.6, §5.7, §5.8, §5.11, §5.3): one atomic step for a
-- whole batch, so a busy worker writes many outcomes in one round trip.
-- ARGV: worker name ('' in eager mode), now (float), now (rq ts), default result ttl,
--       default failure ttl, then one msgpack array holding, per execution, an array of
--       seven strings: job id, execution id, origin it was booked under at claim, outcome,
--       payload, execution started at (float), working seconds. (One packed argument
--       instead of seven per job: encoding arguments is most of a big batch's cost.)
-- outcome: 'finished' | 'failed' | 'stopped' | 'invalid' (the worker could not read the
-- job: failed, never retried) | 'requeue' (worker shutdown: back to the front) |
-- 'release' (a second claim of a job this worker runs already: only its booking goes).
-- payload: base64 return value ('' for None) when finished, base64 exc_string otherwise.
-- Returns, per execution, what was written: a failed job with retries left is 'retried'
-- or 'scheduled'; 'gone' when the job hash no longer exists (nothing is written for it);
-- 'recorded' when this execution's outcome was written before (nothing is written).
-- Nothing here raises on what a job hash holds: a field that is not a number counts as
-- absent, so an outcome is never half written.
local worker, now_text, ts = ARGV[1], ARGV[2], ARGV[3]
local now = tonumber(now_text)
local default_result_ttl, default_failure_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local worker_key = 'rq:worker:' .. worker
-- Only a registration or a heartbeat writes the worker hash whole; written here after it
-- expired (an outage), it would come back without rq's fields and without a ttl.
local registered = worker ~= '' and redis.call('HEXISTS', worker_key, 'birth') == 1

local function number(value, default)
  return tonumber(value) or default
end

local function count(field, working)
  if registered then
    redis.call('HINCRBY', worker_key, field, 1)
    redis.call('HINCRBYFLOAT', worker_key, 'total_working_time', working)
  end
end

local function push(queue, id, at_front)
  if at_front then
    redis.call('LPUSH', queue, id)
  else
    redis.call('RPUSH', queue, id)
  end
end

local function retry_interval(job, retries_left)
  local ok, intervals = pcall(cjson.decode, redis.call('HGET', job, 'retry_intervals') or '[]')
  if not ok or type(intervals) ~= 'table' then intervals = {} end
  return number(intervals[math.max(#intervals - retries_left, 0) + 1], 0)
end

local function release_dependents(id, dependents, parent_failed)
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
      local dep_origin = redis.call('HGET', dep_key, 'origin')
      if ready and dep_origin then
        redis.call('ZREM', 'rq:deferred:' .. dep_origin, dep)
        redis.call('HSET', dep_key, 'status', 'queued', 'enqueued_at', ts)
        push('rq:queue:' .. dep_origin, dep, redis.call('HGET', dep_key, 'enqueue_at_front') == '1')
        redis.call('SREM', dependents, dep)
      end
    end
  end
end

local function finish(id, exec, booked_origin, outcome, payload, started, working)
  local job = 'rq:job:' .. id
  local results = 'rq:results:' .. id
  local dependents = 'rq:job:' .. id .. ':dependents'
  local dependencies = 'rq:job::' .. id .. ':dependencies'
  local member = id .. ':' .. exec

  -- Claim put the member in the worker's set and in rq:wip; only this step takes it out
  -- of both. In neither: this outcome was recorded before (a batch resent after its reply
  -- was lost). In the set only: a sweep took the job for abandoned meanwhile; this run's
  -- outcome stands.
  local in_set = worker ~= '' and redis.call('SREM', worker_key .. ':executions', member) == 1
  local in_wip = redis.call('ZREM', 'rq:wip:' .. booked_origin, member) == 1
  if worker ~= '' and not in_set and not in_wip then
    return 'recorded'
  end
  if registered and redis.call('HGET', worker_key, 'current_job') == id then
    redis.call('HDEL', worker_key, 'current_job')
  end
  redis.call('DEL', 'rq:execution:' .. id .. ':' .. exec)
  redis.call('ZREM', 'rq:executions:' .. id, exec)
  if outcome == 'release' then
    return 'released'
  end
  if redis.call('EXISTS', job) == 0 then
    return 'gone'  -- deleted while it ran, or its ttl ran out: nothing to record it in
  end
  local origin = redis.call('HGET', job, 'origin')
  if not origin or origin == '' then origin = booked_origin end
  local queue = 'rq:queue:' .. origin
  if not in_wip and redis.call('HGET', job, 'status') == 'queued' then
    redis.call('LREM', queue, 1, id)  -- the copy a sweep put back: this run stands
  end

  local function expire_job(ttl)
    for _, key in ipairs({job, dependents, dependencies}) do
      redis.call('EXPIRE', key, ttl)
    end
  end

  if outcome == 'requeue' then
    redis.call('HSET', job, 'status', 'queued', 'enqueued_at', ts)
    redis.call('LPUSH', queue, id)
    return 'requeue'
  end

  if outcome == 'finished' then
    count('successful_job_count', working)
    local ttl = number(redis.call('HGET', job, 'result_ttl'), default_result_ttl)
    release_dependents(id, dependents, false)
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
                        'execution_ended_at', now_text}) do
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

  -- failed, invalid or stopped
  count('failed_job_count', working)
  local retries_left = number(redis.call('HGET', job, 'retries_left'), 0)
  if outcome == 'failed' and retries_left > 0 then
    local interval = retry_interval(job, retries_left)
    redis.call('HSET', job, 'retries_left', retries_left - 1, 'ended_at', ts)
    if interval <= 0 then
      redis.call('HSET', job, 'status', 'queued', 'enqueued_at', ts)
      push(queue, id, redis.call('HGET', job, 'enqueue_at_front_on_retry') == '1')
      return 'retried'
    end
    redis.call('SADD', 'rq:queues', queue)
    redis.call('HSET', job, 'status', 'scheduled')
    redis.call('ZADD', 'rq:scheduled:' .. origin, math.floor(now) + interval, id)
    return 'scheduled'
  end

  if outcome == 'invalid' then outcome = 'failed' end
  local failure_ttl = tonumber(redis.call('HGET', job, 'failure_ttl'))
  local ttl = failure_ttl or default_failure_ttl
  redis.call('HSET', job, 'status', outcome, 'ended_at', ts, 'last_heartbeat', ts)
  expire_job(ttl)
  redis.call('ZADD', 'rq:failed:' .. origin, now + ttl, id)
  redis.call('XADD', results, 'MAXLEN', '~', '10', '*', 'type', '2', 'worker_name', worker,
    'exc_string', payload, 'execution_id', exec, 'execution_started_at', started,
    'execution_ended_at', now_text)
  if failure_ttl then
    redis.call('EXPIRE', results, ttl)
  end
  if outcome == 'failed' then
    release_dependents(id, dependents, true)
  end
  return outcome
end

local written = {}
for _, e in ipairs(cmsgpack.unpack(ARGV[6])) do
  written[#written + 1] = finish(e[1], e[2], e[3], e[4], e[5], e[6], e[7])
end
if registered and redis.call('SCARD', worker_key .. ':executions') == 0 then
  redis.call('HSET', worker_key, 'state', 'idle')  -- as rq does after its job
end
return written
