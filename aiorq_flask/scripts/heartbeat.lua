-- One worker heartbeat: keep the worker key alive and push every running execution's
-- expiry forward, so no sweep takes a live job for abandoned (spec §5.4).
-- ARGV: worker name, now (float), now (rq ts), wip ttl, worker key ttl, state,
--       then (job id, execution id, origin) for each running job.
local worker, now, ts = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local ttl, worker_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local worker_key = 'rq:worker:' .. worker
redis.call('HSET', worker_key, 'last_heartbeat', ts, 'state', ARGV[6])
redis.call('EXPIRE', worker_key, worker_ttl)
redis.call('EXPIRE', worker_key .. ':executions', ttl + 60)
for i = 7, #ARGV, 3 do
  local id, exec, origin = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local execution = 'rq:execution:' .. id .. ':' .. exec
  redis.call('ZADD', 'rq:wip:' .. origin, 'XX', now + ttl, id .. ':' .. exec)
  redis.call('ZADD', 'rq:executions:' .. id, now + ttl + 60, exec)
  redis.call('EXPIRE', 'rq:executions:' .. id, ttl + 60)
  if redis.call('EXISTS', execution) == 1 then
    redis.call('HSET', execution, 'last_heartbeat', ARGV[2])
    redis.call('EXPIRE', execution, ttl)
  end
  if redis.call('EXISTS', 'rq:job:' .. id) == 1 then
    redis.call('HSET', 'rq:job:' .. id, 'last_heartbeat', ts)
  end
end
return 1
