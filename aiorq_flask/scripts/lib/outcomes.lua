-- Recording outcomes (spec §5.6-§5.9, §5.11): one routine per outcome, shared by
-- finish.lua, sweep.lua and heartbeat.lua. Each takes the context C of its call:
--   C.worker: the worker's name ('' for eager mode and for a sweep's rescues)
--   C.now: now as a number, C.now_text: now as it was sent, C.ts: now as an rq timestamp
--   C.result_ttl, C.failure_ttl: the worker's defaults
-- and the job's id and origin. Nothing here raises on what a job hash holds: a field that
-- is not a number counts as absent, so an outcome is never half written.

local function number(value, default)
  return tonumber(value) or default
end

local function push(origin, id, at_front)
  redis.call(at_front and 'LPUSH' or 'RPUSH', KEY.queue(origin), id)
end

-- A negative ttl keeps the key for good (rq's -1): EXPIRE with it would delete it now.
local function expire(key, ttl)
  if ttl < 0 then
    redis.call('PERSIST', key)
  else
    redis.call('EXPIRE', key, ttl)
  end
end

local function expire_job(id, ttl)
  for _, key in ipairs({KEY.job(id), KEY.dependents(id), KEY.dependencies(id)}) do
    expire(key, ttl)
  end
end

local function add_result(id, entry)
  redis.call('XADD', KEY.results(id), 'MAXLEN', '~', '10', '*', unpack(entry))
end

-- The deferred jobs waiting on `id` whose parents are now all done (spec §5.3).
local function release_dependents(C, id, parent_failed)
  local dependents = KEY.dependents(id)
  for _, dep in ipairs(redis.call('SMEMBERS', dependents)) do
    local dep_key = KEY.job(dep)
    local allow = redis.call('HGET', dep_key, 'allow_dependency_failures') == '1'
    local origin = redis.call('HGET', dep_key, 'origin')
    local ready = origin and redis.call('HGET', dep_key, 'status') == STATUS.DEFERRED
      and (allow or not parent_failed)
    for _, other in ipairs(ready and redis.call('SMEMBERS', KEY.dependencies(dep)) or {}) do
      local status = redis.call('HGET', KEY.job(other), 'status')
      if other ~= id and status and status ~= STATUS.FINISHED
          and not (allow and status == STATUS.FAILED) then
        ready = false
      end
    end
    if ready then
      redis.call('ZREM', KEY.deferred(origin), dep)
      redis.call('HSET', dep_key, 'status', STATUS.QUEUED, 'enqueued_at', C.ts)
      if not rl_hold(dep, C.ts, C.now) then  -- lib/rate_limit.lua
        push(origin, dep, redis.call('HGET', dep_key, 'enqueue_at_front') == '1')
      end
      redis.call('SREM', dependents, dep)
    end
  end
end

-- Back to the front of its queue, to run again (shutdown, a dead worker, a lost claim).
local function requeue(C, id, origin)
  redis.call('HSET', KEY.job(id), 'status', STATUS.QUEUED, 'enqueued_at', C.ts)
  push(origin, id, true)
end

-- A success: result entry, finished registry, expiries, dependents (spec §5.6).
local function record_finished(C, id, origin, exec, payload, started)
  local job = KEY.job(id)
  local ttl = number(redis.call('HGET', job, 'result_ttl'), C.result_ttl)
  release_dependents(C, id, false)
  if ttl == 0 then
    redis.call('DEL', job, KEY.dependents(id), KEY.dependencies(id), KEY.results(id))
    return
  end
  redis.call('HSET', job, 'status', STATUS.FINISHED, 'ended_at', C.ts, 'last_heartbeat', C.ts)
  local entry = {'type', '1', 'worker_name', C.worker}
  if payload ~= '' then
    entry[#entry + 1] = 'return_value'
    entry[#entry + 1] = payload
  end
  for _, v in ipairs({'execution_id', exec, 'execution_started_at', started,
                      'execution_ended_at', C.now_text}) do
    entry[#entry + 1] = v
  end
  add_result(id, entry)
  if ttl > 0 then
    redis.call('EXPIRE', KEY.results(id), ttl)
    redis.call('ZADD', KEY.finished(origin), C.now + ttl, id)
    expire_job(id, ttl)
  else
    redis.call('PERSIST', KEY.results(id))
    redis.call('ZADD', KEY.finished(origin), '+inf', id)
  end
end

-- A failure, or a stop (status STATUS.STOPPED, spec §5.11): result entry, failed registry,
-- expiries, and for a failure the dependents that allow it (spec §5.7). `exec` is nil for
-- a job a sweep fails: its execution is unknown.
local function record_failed(C, id, origin, status, exec, payload, started)
  local job = KEY.job(id)
  local failure_ttl = tonumber(redis.call('HGET', job, 'failure_ttl'))
  local ttl = failure_ttl or C.failure_ttl
  redis.call('HSET', job, 'status', status, 'ended_at', C.ts, 'last_heartbeat', C.ts)
  expire_job(id, ttl)
  -- rq scores a kept-for-good entry -1: below every cleanup's range, as its own are
  redis.call('ZADD', KEY.failed(origin), ttl < 0 and -1 or C.now + ttl, id)
  local entry = {'type', '2', 'worker_name', C.worker, 'exc_string', payload}
  if exec then
    for _, v in ipairs({'execution_id', exec, 'execution_started_at', started,
                        'execution_ended_at', C.now_text}) do
      entry[#entry + 1] = v
    end
  end
  add_result(id, entry)
  if failure_ttl then
    expire(KEY.results(id), ttl)
  end
  if status == STATUS.FAILED then
    release_dependents(C, id, true)
  end
end

-- A failure with retries left (spec §5.8): queued again now, or scheduled after its
-- interval. Returns 'retried', or the status scheduled.
local function record_retried(C, id, origin, retries_left)
  local job = KEY.job(id)
  local ok, intervals = pcall(cjson.decode, redis.call('HGET', job, 'retry_intervals') or '[]')
  if not ok or type(intervals) ~= 'table' then intervals = {} end
  local interval = number(intervals[math.max(#intervals - retries_left, 0) + 1], 0)
  redis.call('HSET', job, 'retries_left', retries_left - 1, 'ended_at', C.ts)
  if interval <= 0 then
    redis.call('HSET', job, 'status', STATUS.QUEUED, 'enqueued_at', C.ts)
    push(origin, id, redis.call('HGET', job, 'enqueue_at_front_on_retry') == '1')
    return 'retried'
  end
  redis.call('SADD', KEY.queues, KEY.queue(origin))
  redis.call('HSET', job, 'status', STATUS.SCHEDULED)
  redis.call('ZADD', KEY.scheduled(origin), math.ceil(C.now + interval), id)  -- never early
  return STATUS.SCHEDULED
end

-- A job that returned a Retry (rq 3.0, spec §3 number_of_retries): a retried result
-- (type 4), then queued again or scheduled after this attempt's interval; once it has
-- returned one `max` times, failed with a max-retries-exceeded result (type 5).
-- `retry` is JSON: {max, intervals, at_front, value (base64 return value)}.
-- Returns 'retried', or the status written (scheduled, failed).
local function record_retry_returned(C, id, origin, exec, retry, started)
  local job, spec = KEY.job(id), cjson.decode(retry)
  local done = number(redis.call('HGET', job, 'number_of_retries'), 0)
  local failure_ttl = tonumber(redis.call('HGET', job, 'failure_ttl'))
  local ttl = failure_ttl or C.failure_ttl
  add_result(id, {'type', done >= spec.max and '5' or '4', 'worker_name', C.worker,
    'return_value', spec.value, 'execution_id', exec, 'execution_started_at', started,
    'execution_ended_at', C.now_text})
  if failure_ttl then expire(KEY.results(id), ttl) end
  redis.call('HSET', job, 'ended_at', C.ts, 'last_heartbeat', C.ts)
  if done >= spec.max then
    redis.call('HSET', job, 'status', STATUS.FAILED)
    expire_job(id, ttl)
    redis.call('ZADD', KEY.failed(origin), ttl < 0 and -1 or C.now + ttl, id)
    release_dependents(C, id, true)
    return STATUS.FAILED
  end
  local interval = number(spec.intervals[math.min(#spec.intervals - 1, done) + 1], 0)
  local at_front = spec.at_front or redis.call('HGET', job, 'enqueue_at_front_on_retry') == '1'
  redis.call('HSET', job, 'number_of_retries', done + 1)
  if at_front then redis.call('HSET', job, 'enqueue_at_front_on_retry', 1) end
  if interval <= 0 then
    redis.call('HSET', job, 'status', STATUS.QUEUED, 'enqueued_at', C.ts)
    push(origin, id, at_front)
    return 'retried'
  end
  redis.call('SADD', KEY.queues, KEY.queue(origin))
  redis.call('HSET', job, 'status', STATUS.SCHEDULED)
  redis.call('ZADD', KEY.scheduled(origin), math.ceil(C.now + interval), id)
  return STATUS.SCHEDULED
end

-- A started job whose worker died (spec §5.9, made faster): back to the front of its
-- queue, or failed as rq does when its Retry is used up. Returns true if requeued.
local function record_abandoned(C, id, origin, exc_string)
  local job = KEY.job(id)
  local retries_left = tonumber(redis.call('HGET', job, 'retries_left'))
  if retries_left == nil or retries_left > 0 then
    if retries_left then
      redis.call('HSET', job, 'retries_left', retries_left - 1)
    end
    requeue(C, id, origin)
    return true
  end
  record_failed(C, id, origin, STATUS.FAILED, nil, exc_string, nil)
  return false
end

-- Forget one execution's booking: its hash, its place in the job's executions and in the
-- queue's rq:wip (spec §5.6 step 7).
local function unbook(id, exec, booked_origin)
  redis.call('DEL', KEY.execution(id, exec))
  redis.call('ZREM', KEY.executions(id), exec)
  return redis.call('ZREM', KEY.wip(booked_origin), id .. ':' .. exec) == 1
end
