-- Write one job in rq's format (spec §5.1, §5.2): the hash, `SADD` to the queues set, and
-- the push (or the scheduled entry) in one atomic step, so no worker can pop an id before
-- its hash exists.
-- With parents (depends_on, spec §5.3), the check of their statuses and the write are this
-- same atomic step: a job whose parents are not all done is written deferred instead, and
-- booked where the worker that finishes a parent looks for it. (rq's WATCH sequence holds
-- a connection across round trips; this needs none and cannot race.)
-- KEYS: the queue key.
-- ARGV: job id, status (a STATUS: queued, scheduled or started), where ('R' RPUSH, 'L'
--       LPUSH, a due epoch when scheduled, '' for no push), queue name, ttl or '',
--       created_at (rq ts, also its enqueued_at if it is queued now), data ('' when
--       written beside, by a plain HSET just before this call), now (integer epoch), '1'
--       if a failed parent counts as done, the number of parents n, the n parent ids, then
--       the job's field/value pairs (prepare.py encodes them; EMPTY_FIELDS, rq's fields
--       every new job has empty, come from the preamble).
-- Returns the status written.
local queue = KEYS[1]
local id, status, where, origin, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local job = KEY.job(id)
local allow_failed, parent_count = ARGV[9] == '1', tonumber(ARGV[10])
local parents = {unpack(ARGV, 11, 10 + parent_count)}
for _, parent in ipairs(parents) do
  local parent_status = redis.call('HGET', KEY.job(parent), 'status')
  local done = parent_status == false or parent_status == STATUS.FINISHED  -- gone: expired
    or (allow_failed and parent_status == STATUS.FAILED)
  if not done then
    status, where = STATUS.DEFERRED, ''
  end
end

local fields = {'status', status}
for _, name in ipairs(EMPTY_FIELDS) do
  fields[#fields + 1] = name
  fields[#fields + 1] = ''
end
if ARGV[7] ~= '' then
  fields[#fields + 1] = 'data'
  fields[#fields + 1] = ARGV[7]
end
if status == STATUS.QUEUED then
  fields[#fields + 1] = 'enqueued_at'
  fields[#fields + 1] = ARGV[6]
end
for i = 11 + parent_count, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', job, unpack(fields))

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
  redis.call('ZADD', KEY.deferred(origin), ARGV[8], id)
  for _, parent in ipairs(parents) do
    redis.call('SADD', KEY.dependents(parent), id)
    redis.call('SADD', KEY.dependencies(id), parent)
  end
end
return status
