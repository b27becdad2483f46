-- Claim up to ARGV[2] waiting jobs for one worker, queues in priority order (KEYS).
-- Popping the id and booking it in rq:wip:<origin> happen in this one atomic step, so a
-- claimed id is never held only in a worker's memory (spec §5.5, A and B merged).
-- KEYS: the queue keys. ARGV: worker name, max jobs, now (float), now (rq ts), wip ttl,
-- execution id prefix (24 random hex digits; the claim's index completes each 32-digit
-- execution id), the size above which `data` is left out, then the queue names in the
-- order of KEYS.
-- Returns a REPLY per popped id: the job hash as it was (the worker decodes and validates
-- it, and fails the jobs it cannot read), without a big `data` (copied through Lua it
-- would hold Redis for milliseconds per MiB: the worker reads it with a plain HGET, or
-- fails it unread when the size, also in the reply, is above its limit). Two
-- kinds of id are dropped, not booked: an id whose job hash is gone (its ttl ran out while
-- it waited, or it was deleted), and one whose job already ended (running it again would
-- run it twice).
-- Returns -1 and claims nothing while `rq suspend` is in force.
local worker, max = ARGV[1], tonumber(ARGV[2])
local now, ts, ttl = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local big = tonumber(ARGV[7])
local ENDED = {[STATUS.FINISHED] = true, [STATUS.FAILED] = true, [STATUS.STOPPED] = true,
  [STATUS.CANCELED] = true}
local worker_key = KEY.worker(worker)
local executions = KEY.worker_executions(worker)
-- Only a registration or a heartbeat writes the worker hash whole; written here after it
-- expired (an outage), it would come back without rq's fields and without a ttl.
local registered = redis.call('HEXISTS', worker_key, 'birth') == 1
if redis.call('EXISTS', KEY.suspended) == 1 then
  if registered then
    redis.call('HSET', worker_key, 'state', 'suspended')
  end
  return -1
end

local function read(job)
  local size = redis.call('HSTRLEN', job, 'data')
  if size <= big then
    return redis.call('HGETALL', job), 0, size
  end
  local hash = {}
  for _, field in ipairs(redis.call('HKEYS', job)) do
    if field ~= 'data' then
      hash[#hash + 1] = field
      hash[#hash + 1] = redis.call('HGET', job, field)
    end
  end
  return hash, 1, size
end

local function book(id, exec, origin)
  local member = id .. ':' .. exec
  local execution = KEY.execution(id, exec)
  -- Only finish.lua (or a heartbeat, for a claim whose reply was lost) takes the member
  -- out of the worker's set: a batch sent again must not record twice.
  redis.call('SADD', executions, member)
  redis.call('HSET', execution, 'id', exec, 'job_id', id, 'created_at', ARGV[3],
    'last_heartbeat', ARGV[3], 'worker_name', worker)
  redis.call('EXPIRE', execution, ttl)
  redis.call('ZADD', KEY.executions(id), now + ttl + 60, exec)
  redis.call('EXPIRE', KEY.executions(id), ttl + 60)
  redis.call('ZADD', KEY.wip(origin), now + ttl, member)
  redis.call('HSET', KEY.job(id), 'status', STATUS.STARTED, 'started_at', ts,
    'last_heartbeat', ts, 'worker_name', worker)
  redis.call('PERSIST', KEY.job(id))
end

local claimed, last_booked = {}, nil
for q, queue_key in ipairs(KEYS) do
  local room = max - #claimed
  for _, id in ipairs(room > 0 and redis.call('LPOP', queue_key, room) or {}) do
    local hash, left_out, size = read(KEY.job(id))
    local status = redis.call('HGET', KEY.job(id), 'status')
    local dropped = #hash == 0 and 'missing' or (ENDED[status] and status)
    if dropped then
      claimed[#claimed + 1] = REPLY({id = id, execution_id = false, origin = dropped,
        hash = false, left_out = 0, size = 0})
    else
      local exec = ARGV[6] .. string.format('%08x', #claimed)
      local origin = redis.call('HGET', KEY.job(id), 'origin')
      if not origin or origin == '' then origin = ARGV[7 + q] end
      book(id, exec, origin)
      last_booked = id
      claimed[#claimed + 1] = REPLY({id = id, execution_id = exec, origin = origin,
        hash = hash, left_out = left_out, size = size})
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
