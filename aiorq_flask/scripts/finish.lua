-- Record how executions ended (spec §5.6, §5.7, §5.8, §5.11, §5.3): one atomic step for a
-- whole batch, so a busy worker writes many outcomes in one round trip. The outcome
-- routines are lib/outcomes.lua's.
-- ARGV: worker name ('' in eager mode), now (float), now (rq ts), default result ttl,
--       default failure ttl, then one msgpack array holding, per execution, an array of
--       seven strings: job id, execution id, origin it was booked under at claim, outcome
--       (an OUTCOME), payload, execution started at (float), working seconds. (One packed
--       argument instead of seven per job: encoding arguments is most of a big batch's
--       cost.)
-- payload: base64 return value ('' for None) when finished, the returned Retry as JSON for
-- OUTCOME.RETRY (see record_retry_returned), base64 exc_string otherwise.
-- Returns, per execution, what was written: the outcome, or 'retried' / 'scheduled' for a
-- failure with retries left; 'gone' when the job hash no longer exists (nothing is written
-- for it); 'recorded' when this execution's outcome was written before (nothing is
-- written); 'released' for an unbooked second claim.
local C = {worker = ARGV[1], now = tonumber(ARGV[2]), now_text = ARGV[2], ts = ARGV[3],
  result_ttl = tonumber(ARGV[4]), failure_ttl = tonumber(ARGV[5])}
local worker_key = KEY.worker(C.worker)
-- Only a registration or a heartbeat writes the worker hash whole; written here after it
-- expired (an outage), it would come back without rq's fields and without a ttl.
local registered = C.worker ~= '' and redis.call('HEXISTS', worker_key, 'birth') == 1

-- The worker's counters, added up over the batch and written once at its end
-- (HINCRBYFLOAT is the costliest call a job's outcome made).
local counted = {successful_job_count = 0, failed_job_count = 0, working = 0}
local function count(field, working)
  counted[field] = counted[field] + 1
  counted.working = counted.working + (tonumber(working) or 0)
end

-- Claim put the member in the worker's set and in rq:wip; only this step takes it out of
-- both. In neither: this outcome was recorded before (a batch resent after its reply was
-- lost). In the set only: a sweep took the job for abandoned meanwhile; this run's outcome
-- stands, and the copy the sweep put back on the queue is taken out.
local function unbook_once(id, exec, booked_origin)
  local member = id .. ':' .. exec
  local in_set = C.worker ~= ''
    and redis.call('SREM', KEY.worker_executions(C.worker), member) == 1
  local in_wip = unbook(id, exec, booked_origin)
  if C.worker ~= '' and not in_set and not in_wip then
    return false
  end
  if registered and redis.call('HGET', worker_key, 'current_job') == id then
    redis.call('HDEL', worker_key, 'current_job')
  end
  if not in_wip and redis.call('HGET', KEY.job(id), 'status') == STATUS.QUEUED then
    redis.call('LREM', KEY.queue(booked_origin), 1, id)
  end
  return true
end

local function finish(id, exec, booked_origin, outcome, payload, started, working)
  if not unbook_once(id, exec, booked_origin) then
    return 'recorded'
  elseif outcome == OUTCOME.RELEASE then
    return 'released'
  elseif redis.call('EXISTS', KEY.job(id)) == 0 then
    return 'gone'  -- deleted while it ran, or its ttl ran out: nothing to record it in
  end
  local origin = redis.call('HGET', KEY.job(id), 'origin')
  if not origin or origin == '' then origin = booked_origin end
  if outcome == OUTCOME.REQUEUE then
    requeue(C, id, origin)
    return outcome
  elseif outcome == OUTCOME.FINISHED then
    count('successful_job_count', working)
    record_finished(C, id, origin, exec, payload, started)
    record_repeat(C, id, origin)
    return outcome
  elseif outcome == OUTCOME.RETRY then
    count('failed_job_count', working)  -- as rq counts a returned Retry
    return record_retry_returned(C, id, origin, exec, payload, started)
  end
  count('failed_job_count', working)
  local retries_left = number(redis.call('HGET', KEY.job(id), 'retries_left'), 0)
  if outcome == OUTCOME.FAILED and retries_left > 0 then
    return record_retried(C, id, origin, retries_left)
  end
  local status = outcome == OUTCOME.STOPPED and STATUS.STOPPED or STATUS.FAILED
  record_failed(C, id, origin, status, exec, payload, started)
  return status
end

local written = {}
for _, e in ipairs(cmsgpack.unpack(ARGV[6])) do
  local limit = rl_key_of(e[1])  -- lib/rate_limit.lua: the slot is freed once it ended
  written[#written + 1] = finish(e[1], e[2], e[3], e[4], e[5], e[6], e[7])
  rl_release(limit, e[1], C.ts, C.now)
end
if registered and counted.successful_job_count + counted.failed_job_count > 0 then
  for _, field in ipairs({'successful_job_count', 'failed_job_count'}) do
    if counted[field] > 0 then redis.call('HINCRBY', worker_key, field, counted[field]) end
  end
  redis.call('HINCRBYFLOAT', worker_key, 'total_working_time', counted.working)
end
if registered and redis.call('SCARD', KEY.worker_executions(C.worker)) == 0 then
  redis.call('HSET', worker_key, 'state', 'idle')  -- as rq does after its job
end
return written
