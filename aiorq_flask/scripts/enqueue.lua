-- Write one job in rq's format (spec §5.1, §5.2): the hash, `SADD` to the queues set, and
-- the push (or the scheduled entry) in one atomic step, so no worker can pop an id before
-- its hash exists.
-- With parents (depends_on, spec §5.3), the check of their statuses and the write are this
-- same atomic step: a job whose parents are not all done is written deferred instead, and
-- booked where the worker that finishes a parent looks for it. (rq's WATCH sequence holds
-- a connection across round trips; this needs none and cannot race.)
-- KEYS: the queue key, and for a unique job (unique=True) its job key.
-- ARGV: job id, status (a STATUS: queued, scheduled or started), where ('R' RPUSH, 'L'
--       LPUSH, a due epoch when scheduled, '' for no push), ttl or '', data ('' when
--       written beside, by a plain HSET just before this call), the number of parents n,
--       and with parents '1' if a failed one counts as done and the n parent ids, then the
--       values of CALL_FIELDS, then optional field/value pairs. (prepare.py names the
--       fields: CALL_FIELDS, and EMPTY_FIELDS, rq's fields every new job has empty.)
-- Returns the status written, or nil when a unique job's hash exists (nothing written).
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then
  return false
end
local queue = KEYS[1]
local id, status, where, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local job = KEY.job(id)
local parent_count = tonumber(ARGV[6])
local at = parent_count > 0 and 8 + parent_count or 7  -- where CALL_FIELDS' values begin
local allow_failed, parents = ARGV[7] == '1', {unpack(ARGV, 8, at - 1)}
for _, parent in ipairs(parents) do
  local parent_status = redis.call('HGET', KEY.job(parent), 'status')
  local done = parent_status == false or parent_status == STATUS.FINISHED  -- gone: expired
    or (allow_failed and parent_status == STATUS.FAILED)
  if not done then
    status, where = STATUS.DEFERRED, ''
  end
end

local fields = NEW_JOB(status, at)  -- prepare.py's CALL_FIELDS, then EMPTY_FIELDS
if ARGV[5] ~= '' then
  fields[#fields + 1] = 'data'
  fields[#fields + 1] = ARGV[5]
end
if status == STATUS.QUEUED then
  fields[#fields + 1] = 'enqueued_at'
  fields[#fields + 1] = ARGV[at + AT.created_at]
end
for i = at + CALL_COUNT, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', job, unpack(fields))
local origin = ARGV[at + AT.origin]

if ttl ~= '' then
  for _, key in ipairs({job, KEY.dependents(id), KEY.dependencies(id)}) do
    redis.call('EXPIRE', key, ttl)
  end
end
redis.call('SADD', KEY.queues, queue)
if where == 'R' then
  redis.call('RPUSH', queue, id)
elseif where == 'L' then
  redis.call('LPUSH', queue, id)
elseif where ~= '' then
  redis.call('ZADD', KEY.scheduled(origin), where, id)
end
if status == STATUS.DEFERRED then
  redis.call('ZADD', KEY.deferred(origin), redis.call('TIME')[1], id)
  for _, parent in ipairs(parents) do
    redis.call('SADD', KEY.dependents(parent), id)
    redis.call('SADD', KEY.dependencies(id), parent)
  end
end
return status
