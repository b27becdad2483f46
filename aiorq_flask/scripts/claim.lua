-- Claim up to ARGV[2] waiting jobs for one worker, queues in priority order (KEYS).
-- Popping the id and booking it in rq:wip:<origin> happen in this one atomic step, so a
-- claimed id is never held only in a worker's memory (spec §5.5, A and B merged).
-- ARGV: worker name, max jobs, now (float), now (rq ts), wip ttl, execution id prefix
-- (24 random hex digits; the claim's index completes each 32-digit execution id).
-- Returns {id, execution id, origin, {data, timeout, callback names}} per claimed job;
-- data is false when the hash is gone or has no data (the worker fails such ids).
-- Returns -1 and claims nothing while `rq suspend` is in force.
local worker, max = ARGV[1], tonumber(ARGV[2])
local now, ts, ttl = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
-- What the worker needs to run a job (see FIELDS), read before the bookkeeping; origin last.
local FIELDS = {'data', 'timeout', 'success_callback_name', 'failure_callback_name',
  'stopped_callback_name', 'origin'}
if redis.call('EXISTS', 'rq:suspended') == 1 then
  redis.call('HSET', 'rq:worker:' .. worker, 'state', 'suspended')
  return -1
end
local claimed = {}
for _, queue_key in ipairs(KEYS) do
  local room = max - #claimed
  if room <= 0 then break end
  local ids = redis.call('LPOP', queue_key, room)
  if ids then
    for _, id in ipairs(ids) do
      local exec = ARGV[6] .. string.format('%08x', #claimed)
      local job = 'rq:job:' .. id
      local fields = redis.call('HMGET', job, unpack(FIELDS))
      local origin = fields[6] or string.sub(queue_key, 10)
      fields[6] = nil
      -- Every claimed execution, even of an id without a job, stays in the worker's set
      -- until finish.lua records its outcome (which it does once only).
      local member = id .. ':' .. exec
      redis.call('SADD', 'rq:worker:' .. worker .. ':executions', member)
      if not fields[1] then
        fields = {}
      else
        local execution = 'rq:execution:' .. id .. ':' .. exec
        redis.call('HSET', execution, 'id', exec, 'job_id', id, 'created_at', ARGV[3],
          'last_heartbeat', ARGV[3], 'worker_name', worker)
        redis.call('EXPIRE', execution, ttl)
        redis.call('ZADD', 'rq:executions:' .. id, now + ttl + 60, exec)
        redis.call('EXPIRE', 'rq:executions:' .. id, ttl + 60)
        redis.call('ZADD', 'rq:wip:' .. origin, now + ttl, member)
        redis.call('HSET', job, 'status', 'started', 'started_at', ts, 'last_heartbeat', ts,
          'worker_name', worker)
        redis.call('PERSIST', job)
      end
      claimed[#claimed + 1] = {id, exec, origin, fields}
    end
  end
end
if #claimed > 0 then
  local worker_key = 'rq:worker:' .. worker
  redis.call('HSET', worker_key, 'state', 'busy', 'last_heartbeat', ts,
    'current_job', claimed[#claimed][1])
  redis.call('EXPIRE', 'rq:worker:' .. worker .. ':executions', ttl + 60)
end
return claimed
