-- One worker heartbeat (spec §5.4): keep the worker's registration and every running
-- execution's booking alive, whatever happened to Redis since the last one.
-- - The worker hash is written again in full if it is gone (it expired during an outage,
--   or Redis lost its data), and the worker rejoins rq:workers and rq:workers:<q>, which
--   other workers prune of expired members.
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
-- Returns {written again (0/1), taken back, run elsewhere, orphans requeued}.
local worker, now, ts = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local ttl, worker_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local worker_key = 'rq:worker:' .. worker
local executions = worker_key .. ':executions'
local pairs_count = tonumber(ARGV[7])
local queues_at = 8 + 2 * pairs_count
local running_at = queues_at + 1 + tonumber(ARGV[queues_at])

local written_again = 0
if redis.call('HEXISTS', worker_key, 'birth') == 0 then  -- gone, or rebuilt by someone else
  redis.call('HSET', worker_key, unpack(ARGV, 8, queues_at - 1))
  written_again = 1
end
redis.call('HSET', worker_key, 'last_heartbeat', ts, 'state', ARGV[6])
redis.call('EXPIRE', worker_key, worker_ttl)
redis.call('SADD', 'rq:workers', worker_key)
for i = queues_at + 1, running_at - 1 do
  redis.call('SADD', 'rq:workers:' .. ARGV[i], worker_key)
end

local live, taken_back, elsewhere = {}, 0, 0
for i = running_at, #ARGV, 4 do
  local id, exec, origin = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local member = id .. ':' .. exec
  local job = 'rq:job:' .. id
  local wip = 'rq:wip:' .. origin
  live[member] = true
  local ours = redis.call('ZSCORE', wip, member) ~= false
  -- An ended execution's outcome is on its way to finish.lua: keep its booking alive,
  -- but never take it back (it may be the outcome that requeued it).
  if not ours and ARGV[i + 3] == 'running' then
    local status = redis.call('HGET', job, 'status')
    if status == 'queued' and redis.call('LREM', 'rq:queue:' .. origin, 1, id) > 0 then
      redis.call('HSET', job, 'status', 'started', 'worker_name', worker)
      taken_back = taken_back + 1
      ours = true
    elseif status == 'started' and redis.call('HGET', job, 'worker_name') == worker then
      ours = true
    elseif status == 'started' then
      elsewhere = elsewhere + 1
    end
  end
  if ours then
    local execution = 'rq:execution:' .. id .. ':' .. exec
    redis.call('ZADD', wip, now + ttl, member)
    redis.call('SADD', executions, member)
    redis.call('HSET', execution, 'id', exec, 'job_id', id, 'last_heartbeat', ARGV[2],
      'worker_name', worker)
    redis.call('EXPIRE', execution, ttl)
    redis.call('ZADD', 'rq:executions:' .. id, now + ttl + 60, exec)
    redis.call('EXPIRE', 'rq:executions:' .. id, ttl + 60)
    if redis.call('EXISTS', job) == 1 then  -- never leave a stray hash of a deleted job
      redis.call('HSET', job, 'last_heartbeat', ts)
    end
  end
end

local orphans = 0
for _, member in ipairs(redis.call('SMEMBERS', executions)) do
  if not live[member] then
    redis.call('SREM', executions, member)
    local id, exec = string.match(member, '^(.*):([^:]*)$')  -- execution ids hold no ':'
    local job = 'rq:job:' .. (id or member)
    local origin = redis.call('HGET', job, 'origin')
    if id and origin and redis.call('ZREM', 'rq:wip:' .. origin, member) == 1
        and redis.call('HGET', job, 'status') == 'started' then
      redis.call('DEL', 'rq:execution:' .. id .. ':' .. exec)
      redis.call('ZREM', 'rq:executions:' .. id, exec)
      redis.call('HSET', job, 'status', 'queued', 'enqueued_at', ts)
      redis.call('LPUSH', 'rq:queue:' .. origin, id)
      orphans = orphans + 1
    end
  end
end
redis.call('EXPIRE', executions, ttl + 60)
return {written_again, taken_back, elsewhere, orphans}
