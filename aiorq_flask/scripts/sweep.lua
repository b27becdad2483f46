-- Rescue the jobs of dead workers: rq:wip:<q> members whose expiry has passed (spec §5.9,
-- made faster and gentler). Each member is removed atomically here, so two sweeping
-- workers never rescue one job twice. A job still started goes back to the front of its
-- queue; one with a Retry whose retries are used up fails as rq does (record_abandoned).
-- A member is never taken while its worker lives: when the job's worker_name is registered
-- (its hash has its `birth`, and no `death`) and that worker's executions set holds the
-- member, the worker was only late (an outage) and re-asserts it at its next heartbeat.
-- Also drops finished/failed registry entries whose expiry has passed, and workers whose
-- hash has expired (killed ones) from rq:workers and rq:workers:<q>, and frees rate-limit
-- slots that jobs no longer need (lib/rate_limit_clean.lua).
-- ARGV: now (float), now (rq ts), base64 exc_string for failed jobs, default failure ttl,
--       max members per queue, then the queue names.
-- Returns REPLY(swept): how many were requeued and failed, and per rescued job its id, its
-- queue and 1 if requeued (0: failed), flat.
local C = {worker = '', now = tonumber(ARGV[1]), now_text = ARGV[1], ts = ARGV[2],
  failure_ttl = tonumber(ARGV[4])}
local exc, limit = ARGV[3], tonumber(ARGV[5])
local swept = {requeued = 0, failed = 0, abandoned = {}}

local function alive(worker_name, member)
  if not worker_name or worker_name == '' then return false end
  local worker_key = KEY.worker(worker_name)
  return redis.call('HEXISTS', worker_key, 'birth') == 1
    and redis.call('HEXISTS', worker_key, 'death') == 0
    and redis.call('SISMEMBER', KEY.worker_executions(worker_name), member) == 1
end

local function clean_registries(queue)
  redis.call('ZREMRANGEBYSCORE', KEY.finished(queue), 0, C.now)
  redis.call('ZREMRANGEBYSCORE', KEY.failed(queue), 0, C.now)
  for _, worker_key in ipairs(redis.call('SMEMBERS', KEY.workers_on(queue))) do
    if redis.call('EXISTS', worker_key) == 0 then
      redis.call('SREM', KEY.workers_on(queue), worker_key)
      redis.call('SREM', KEY.workers, worker_key)
    end
  end
end

local function rescue(queue, member)
  -- <id>:<execution id>; ids may hold ':' (bad ones do), execution ids never.
  local id, exec = string.match(member, '^(.*):([^:]*)$')
  id, exec = id or member, exec or ''
  if alive(redis.call('HGET', KEY.job(id), 'worker_name'), member) then
    return
  end
  unbook(id, exec, queue)
  if redis.call('HGET', KEY.job(id), 'status') == STATUS.STARTED then
    local origin = redis.call('HGET', KEY.job(id), 'origin')
    if not origin or origin == '' then origin = queue end
    local limit = rl_key_of(id)
    local requeued = record_abandoned(C, id, origin, exc)
    if requeued then
      swept.requeued = swept.requeued + 1
    else
      swept.failed = swept.failed + 1
    end
    local n = #swept.abandoned  -- for the worker's job_abandoned signals
    swept.abandoned[n + 1] = id
    swept.abandoned[n + 2] = origin
    swept.abandoned[n + 3] = requeued and 1 or 0
    rl_release(limit, id, C.ts, C.now)  -- requeued, it keeps its slot
  end
end

for i = 6, #ARGV do
  clean_registries(ARGV[i])
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEY.wip(ARGV[i]), 0, C.now, 'LIMIT', 0, limit)) do
    rescue(ARGV[i], member)
  end
end
rl_clean(C.ts, C.now)
return REPLY(swept)
