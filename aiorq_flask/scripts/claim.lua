-- Claim up to ARGV[2] waiting jobs for one worker, queues in priority order (KEYS).
-- Popping the id and booking it in rq:wip:<origin> happen in this one atomic step, so a
-- claimed id is never held only in a worker's memory (spec §5.5, A and B merged).
-- KEYS: the queue keys. ARGV: worker name, max jobs, now (float), now (rq ts), wip ttl,
-- execution id prefix (24 random hex digits; the claim's index completes each 32-digit
-- execution id), the size above which `data` is left out, then the queue names in the
-- order of KEYS.
-- Returns, per popped id, {id, execution id, origin, HGETALL of the job as it was, 1 if
-- its `data` was left out}; the worker decodes and validates the hash and fails the jobs
-- it cannot read. A big `data` is left out (copied through Lua it would hold Redis for
-- milliseconds per MiB): the worker reads it with a plain HGET. Two kinds of id
-- are dropped, not booked: {id, false, 'missing'} when the job hash is gone (its ttl ran
-- out while it waited, or it was deleted), and {id, false, <status>} when the job already
-- ended (finished, failed, stopped, canceled): running it again would run it twice.
-- Returns -1 and claims nothing while `rq suspend` is in force.
local worker, max = ARGV[1], tonumber(ARGV[2])
local now, ts, ttl = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local big = tonumber(ARGV[7])
local ENDED = {finished = true, failed = true, stopped = true, canceled = true}
local worker_key = 'rq:worker:' .. worker
-- Only a registration or a heartbeat writes the worker hash whole; written here after it
-- expired (an outage), it would come back without rq's fields and without a ttl.
local registered = redis.call('HEXISTS', worker_key, 'birth') == 1
if redis.call('EXISTS', 'rq:suspended') == 1 then
  if registered then
    redis.call('HSET', worker_key, 'state', 'suspended')
  end
  return -1
end
local executions = worker_key .. ':executions'
local claimed, last_booked = {}, nil
for q, queue_key in ipairs(KEYS) do
  local room = max - #claimed
  if room <= 0 then break end
  local ids = redis.call('LPOP', queue_key, room)
  if ids then
    for _, id in ipairs(ids) do
      local job = 'rq:job:' .. id
      local left_out = redis.call('HSTRLEN', job, 'data') > big
      local hash = {}
      if left_out then
        for _, field in ipairs(redis.call('HKEYS', job)) do
          if field ~= 'data' then
            hash[#hash + 1] = field
            hash[#hash + 1] = redis.call('HGET', job, field)
          end
        end
      else
        hash = redis.call('HGETALL', job)
      end
      local status = redis.call('HGET', job, 'status')
      if #hash == 0 then
        claimed[#claimed + 1] = {id, false, 'missing'}
      elseif status and ENDED[status] then
        claimed[#claimed + 1] = {id, false, status}
      else
        local exec = ARGV[6] .. string.format('%08x', #claimed)
        local origin = redis.call('HGET', job, 'origin')
        if not origin or origin == '' then origin = ARGV[7 + q] end
        local member = id .. ':' .. exec
        local execution = 'rq:execution:' .. id .. ':' .. exec
        -- Only finish.lua (or a heartbeat, for a claim whose reply was lost) takes the
        -- member out of the worker's set: a batch sent again must not record twice.
        redis.call('SADD', executions, member)
        redis.call('HSET', execution, 'id', exec, 'job_id', id, 'created_at', ARGV[3],
          'last_heartbeat', ARGV[3], 'worker_name', worker)
        redis.call('EXPIRE', execution, ttl)
        redis.call('ZADD', 'rq:executions:' .. id, now + ttl + 60, exec)
        redis.call('EXPIRE', 'rq:executions:' .. id, ttl + 60)
        redis.call('ZADD', 'rq:wip:' .. origin, now + ttl, member)
        redis.call('HSET', job, 'status', 'started', 'started_at', ts, 'last_heartbeat', ts,
          'worker_name', worker)
        redis.call('PERSIST', job)
        claimed[#claimed + 1] = {id, exec, origin, hash, left_out and 1 or 0}
        last_booked = id
      end
    end
  end
end
if last_booked then
  if registered then
    redis.call('HSET', worker_key, 'state', 'busy', 'last_heartbeat', ts,
      'current_job', last_booked)  -- rq 2.12 reads current_job
  end
  redis.call('EXPIRE', executions, ttl + 60)
end
return claimed
