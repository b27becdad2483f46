-- One worker heartbeat (spec §5.4): keep the worker's registration and every running
-- execution's booking alive, whatever happened to Redis since the last one.
-- - The worker hash is written again in full if it lost its `birth` (it expired during an
--   outage, or Redis lost its data), and the worker rejoins rq:workers and
--   rq:workers:<q>, which other workers prune of expired members.
-- - Each running execution's rq:wip score moves forward. If its member is gone, a sweep
--   took the job for abandoned while this worker was away: if the job still waits in its
--   queue it is taken back (never run twice); if it is started under this worker (Redis
--   came back from an older snapshot) its booking is written again.
-- - Members of the worker's executions set that it does not hold come from a claim whose
--   reply was lost: those jobs never started, so they go back to the front of their queue.
--   (The worker sends a heartbeat only while no claim is in flight.) Executions that
--   ended but whose outcome is not recorded yet are held, and left as they are.
-- ARGV: worker name, now (float), now (rq ts), wip ttl, worker key ttl, state, n, then n
--       field/value pairs of the worker's registration, m, then m queue names, then
--       (job id, execution id, origin, 'running' | 'ended') for each execution it holds.
local C = {worker = ARGV[1], now = tonumber(ARGV[2]), now_text = ARGV[2], ts = ARGV[3]}
local ttl, worker_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local worker_key = KEY.worker(C.worker)
local executions = KEY.worker_executions(C.worker)
local queues_at = 8 + 2 * tonumber(ARGV[7])
local held_at = queues_at + 1 + tonumber(ARGV[queues_at])
local found = {registered_again = 0, taken_back = 0, run_elsewhere = 0, orphans_requeued = 0}

local function register()
  if redis.call('HEXISTS', worker_key, 'birth') == 0 then  -- gone, or rebuilt by another
    redis.call('HSET', worker_key, unpack(ARGV, 8, queues_at - 1))
    found.registered_again = 1
  end
  redis.call('HSET', worker_key, 'last_heartbeat', C.ts, 'state', ARGV[6])
  redis.call('EXPIRE', worker_key, worker_ttl)
  redis.call('SADD', KEY.workers, worker_key)
  for i = queues_at + 1, held_at - 1 do
    redis.call('SADD', KEY.workers_on(ARGV[i]), worker_key)
  end
end

-- Whether a running execution whose rq:wip member is gone is still this worker's to run.
local function reclaim(id, origin)
  local status = redis.call('HGET', KEY.job(id), 'status')
  if status == STATUS.QUEUED and redis.call('LREM', KEY.queue(origin), 1, id) > 0 then
    redis.call('HSET', KEY.job(id), 'status', STATUS.STARTED, 'worker_name', C.worker)
    found.taken_back = found.taken_back + 1
    return true
  elseif status == STATUS.STARTED then
    if redis.call('HGET', KEY.job(id), 'worker_name') == C.worker then return true end
    found.run_elsewhere = found.run_elsewhere + 1
  end
  return false
end

local function keep(id, exec, origin)
  local member, execution = id .. ':' .. exec, KEY.execution(id, exec)
  redis.call('ZADD', KEY.wip(origin), C.now + ttl, member)
  redis.call('SADD', executions, member)
  redis.call('HSET', execution, 'id', exec, 'job_id', id, 'last_heartbeat', C.now_text,
    'worker_name', C.worker)
  redis.call('EXPIRE', execution, ttl)
  redis.call('ZADD', KEY.executions(id), C.now + ttl + 60, exec)
  redis.call('EXPIRE', KEY.executions(id), ttl + 60)
  if redis.call('EXISTS', KEY.job(id)) == 1 then  -- never leave a stray hash of a deleted job
    redis.call('HSET', KEY.job(id), 'last_heartbeat', C.ts)
  end
end

-- A member of the executions set no held execution accounts for: from a lost claim reply.
local function requeue_orphan(member)
  redis.call('SREM', executions, member)
  local id, exec = string.match(member, '^(.*):([^:]*)$')  -- execution ids hold no ':'
  local origin = id and redis.call('HGET', KEY.job(id), 'origin')
  if origin and redis.call('HGET', KEY.job(id), 'status') == STATUS.STARTED
      and unbook(id, exec, origin) then
    requeue(C, id, origin)
    found.orphans_requeued = found.orphans_requeued + 1
  end
end

register()
local held = {}
for i = held_at, #ARGV, 4 do
  local id, exec, origin = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  held[id .. ':' .. exec] = true
  local booked = redis.call('ZSCORE', KEY.wip(origin), id .. ':' .. exec) ~= false
  -- An ended execution's outcome is on its way to finish.lua: keep its booking alive,
  -- but never take it back (it may be the outcome that requeued it).
  if booked or (ARGV[i + 3] == 'running' and reclaim(id, origin)) then
    keep(id, exec, origin)
  end
end
for _, member in ipairs(redis.call('SMEMBERS', executions)) do
  if not held[member] then
    requeue_orphan(member)
  end
end
redis.call('EXPIRE', executions, ttl + 60)
return REPLY(found)
